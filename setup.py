"""The one C extension (ManagedCache's entry store); everything else is configured in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "crypto_bot.memory._cachecore",
            sources=["crypto_bot/memory/_cachecore.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
        )
    ]
)
