"""The one C extension (ManagedCache's entry store); everything else is configured in pyproject.toml.

The extension is optional: on a machine without a working C compiler (or Python headers) the
install still succeeds, says so, and `crypto_bot.memory` runs on its pure-Python entry store
(`crypto_bot/memory/_pystore.py`, same behaviour, slower). `crypto_bot.memory.cache_backend()`
tells which store a process uses.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed build of the optional C store into a plain warning."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except (CCompilerError, ExecError, PlatformError) as error:
            if not ext.optional:
                raise
            self.warn(
                f"the C cache store {ext.name} could not be built ({error}); crypto_bot will use its pure-Python "
                "entry store, which behaves the same and is slower. Install a C compiler and the Python headers "
                "and reinstall to get the C store."
            )


setup(
    cmdclass={"build_ext": OptionalBuildExt},
    ext_modules=[
        Extension(
            "crypto_bot.memory._cachecore",
            sources=["crypto_bot/memory/_cachecore.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ],
)
