"""Estimate the bytes a value would free if a cache dropped its last reference to it.

Covers: builtin scalars and containers, numpy arrays (a view is charged for the
base it keeps alive), pandas DataFrame/Series/Index (numeric, datetime,
categorical, masked and Arrow-backed blocks, sampled object columns, cached
index hash tables), pyarrow arrays and tables, and any other object through
``sys.getsizeof`` plus its ``__dict__``/``__slots__`` contents.
Not covered: whether something outside the value also references it (such an
object is charged as if the value owned it, once per call), process-level
memory (``crypto_bot.memory.probe``), or memory held by C libraries that report
to neither tracemalloc nor the Arrow pool. ``crypto_bot.memory.cache`` charges
each entry with ``sizeof``.

Truth is what tracemalloc (plus ``pyarrow.total_allocated_bytes`` for Arrow
buffers) sees released on ``del value; gc.collect()``; ``bench/bench_sizing.py``
compares the two. tracemalloc counts requested sizes, so no pymalloc rounding is
added, and ``sys.getsizeof`` already includes the GC header of tracked objects.

``sizeof`` runs on every cache put: scalars take a type-dispatch fast path,
long containers and object columns are sampled, and numpy, pandas and pyarrow
are only looked up in ``sys.modules``, never imported here. It never raises:
whatever cannot be sized falls back to ``sys.getsizeof`` (or a constant) with a
debug log. Safe to call from several threads; each call keeps its own state.
"""

from __future__ import annotations

import enum
import functools
import gc
import itertools
import logging
import sys
import types
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["sizeof"]

# Containers longer than this are sampled instead of walked element by element;
# inside an already sampled container the smaller count applies, so nested
# sampling costs 128 x 16 element visits, not 128 x 128.
_SAMPLE_COUNT = 128
_NESTED_SAMPLE_COUNT = 16
# Sets and dicts cannot be indexed and iterating a large hash table costs
# milliseconds in cache misses, so their samples are spread over at most this
# many items from the start (dicts: and from the end) of the iteration.
_ITERATION_WINDOW = 16 * _SAMPLE_COUNT
# Nesting deeper than this is charged shallowly: a guard against deep or cyclic
# structures blowing the stack, not a limit real cache values reach.
_MAX_DEPTH = 32
# At most this many containers/objects are opened per call; past it everything
# is charged shallowly so one pathological value cannot stall a cache put.
_NODE_BUDGET = 10_000
# Charged when even sys.getsizeof fails on an object.
_FALLBACK_OBJECT_BYTES = 64
_SMALL_TUPLE_LENGTH = 8

# Object overheads fitted by least squares to tracemalloc truth over small
# frames, series, indexes and arrays (CPython 3.11, numpy 2.4, pandas 3.0);
# they matter for small pandas values only, next to the buffers they vanish.
_NDARRAY_HEADER_BYTES = 96
_FRAME_OVERHEAD_BYTES = 450  # DataFrame, BlockManager, flags, attrs
_FRAME_BLOCK_OVERHEAD_BYTES = 950  # per block: Block, placement, references
_SERIES_OVERHEAD_BYTES = 900  # Series, SingleBlockManager and its one block
_INDEX_OVERHEAD_BYTES = 500
_RANGE_INDEX_BYTES = 300
_NDARRAY_BACKED_ARRAY_OVERHEAD_BYTES = 450  # DatetimeArray and friends: dtype, freq
_MASKED_ARRAY_OVERHEAD_BYTES = 200
_ARROW_EXTENSION_ARRAY_OVERHEAD_BYTES = 270
_CATEGORICAL_OVERHEAD_BYTES = 200
_INDEX_ENGINE_OVERHEAD_BYTES = 600
# The Arrow memory pool hands out 64-byte aligned, 64-byte padded allocations.
_ARROW_ALIGNMENT_BYTES = 64

_getsizeof = sys.getsizeof
_FLOAT_BYTES = _getsizeof(0.0)
_EMPTY_DICT_BYTES = _getsizeof({})
# Objects shared process-wide (classes, modules, functions, enum members; numpy
# and pandas dtypes are added where resolved): dropping a value never frees them.
_SHARED_TYPES = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    enum.Enum,
)


def sizeof(value: object) -> int:
    """Bytes freed if the last reference to ``value`` were dropped (an estimate, never negative)."""
    leaf = _LEAF_SIZERS.get(type(value))
    if leaf is not None:
        return leaf(value)
    if type(value) is tuple and len(value) <= _SMALL_TUPLE_LENGTH:
        small = _small_tuple_size(value)
        if small is not None:
            return small
    return _Walker().size(value, 0)


def _int_size(value: int) -> int:
    return 0 if -5 <= value <= 256 else _getsizeof(value)


def _str_size(value: str) -> int:
    # "" and one-character Latin-1 strings are interpreter-wide singletons.
    if len(value) > 1 or (value and ord(value) > 255):
        return _getsizeof(value)
    return 0


def _bytes_size(value: bytes) -> int:
    return _getsizeof(value) if len(value) > 1 else 0


# Leaves whose size does not depend on the value (bool and None are singletons: dropping them frees nothing).
_FIXED_LEAF_BYTES: dict[type, int] = {float: _FLOAT_BYTES, bool: 0, type(None): 0}


def _fixed_size(size_bytes: int) -> Callable[[Any], int]:
    return lambda value: size_bytes


_LEAF_SIZERS: dict[type, Callable[[Any], int]] = {
    int: _int_size,
    complex: _getsizeof,
    str: _str_size,
    bytes: _bytes_size,
    bytearray: _getsizeof,
    **{leaf_type: _fixed_size(size_bytes) for leaf_type, size_bytes in _FIXED_LEAF_BYTES.items()},
}


# sys.getsizeof adds the GC header to __sizeof__; calling __sizeof__ directly is cheaper.
_TUPLE_GC_HEADER_BYTES = _getsizeof(()) - ().__sizeof__()


def _small_tuple_size(value: tuple) -> int | None:
    """Size of a short tuple of distinct scalars (a quote, a candle), or None when it needs the full walk."""
    if not value:
        return 0
    total = value.__sizeof__() + _TUPLE_GC_HEADER_BYTES
    for item in value:
        item_type = type(item)
        fixed = _FIXED_LEAF_BYTES.get(item_type)  # no sizer call for these
        if fixed is not None:
            total += fixed
            continue
        leaf = _LEAF_SIZERS.get(item_type)
        if leaf is None:
            return None
        total += leaf(item)
    return None if _repeats_an_object(value) else total


def _repeats_an_object(items: tuple) -> bool:
    """True when one object occurs twice in `items` (it must be charged once); cheap for pairs and triples."""
    if len(items) == 2:
        return items[0] is items[1]
    if len(items) == 3:
        return items[0] is items[1] or items[0] is items[2] or items[1] is items[2]
    return len(set(map(id, items))) < len(items)


def _safe_getsizeof(value: object) -> int:
    try:
        return _getsizeof(value)
    except Exception:
        logger.debug(
            "sys.getsizeof failed on %s; charging %d bytes", type(value).__name__, _FALLBACK_OBJECT_BYTES, exc_info=True
        )
        return _FALLBACK_OBJECT_BYTES


def _interleaved_halves(picks: list) -> list:
    """Reorder spread picks so that each half of the list is itself spread: even picks, then odd ones."""
    return picks[0::2] + picks[1::2]


def _spread_positions(length: int, count: int) -> list[int]:
    """``count`` positions spread evenly over ``range(length)``, as interleaved halves."""
    return _interleaved_halves([(2 * slot + 1) * length // (2 * count) for slot in range(count)])


def _window_picks(items: Iterable, window: int, count: int) -> list:
    """About ``count`` items spread over the first ``window`` of an iteration."""
    return list(itertools.islice(items, 0, window, max(1, window // count)))[:count]


def _set_sample(value: Any, count: int) -> list:
    return _interleaved_halves(_window_picks(value, min(len(value), _ITERATION_WINDOW), count))


def _dict_sample(value: dict, count: int) -> list:
    """Items from the dict's oldest and newest entries (insertion order), never the same entry twice."""
    head_window = min(len(value) // 2, _ITERATION_WINDOW)
    tail_window = min(len(value) - len(value) // 2, _ITERATION_WINDOW)
    head = _window_picks(value.items(), head_window, count // 2)
    tail = _window_picks(reversed(value.items()), tail_window, count - count // 2)
    return _interleaved_halves(head + tail)


class _Walker:
    """One sizing pass: identity de-duplication, depth guard and node budget shared by all objects."""

    __slots__ = ("_seen", "_seen_buffer_addresses", "_nodes_left", "_open_samples")

    # id -> object: holding the object keeps its id from being reused by a
    # temporary (a fresh view, a wrapper) while the pass runs.
    _seen: dict[int, object]
    _seen_buffer_addresses: set[int]
    _nodes_left: int
    # How many sampled containers enclose the elements being measured now.
    _open_samples: int

    def __init__(self) -> None:
        self._seen = {}
        self._seen_buffer_addresses = set()
        self._nodes_left = _NODE_BUDGET
        self._open_samples = 0

    def size(self, value: object, depth: int) -> int:
        """Bytes of ``value`` not already charged in this pass."""
        value_type = type(value)
        leaf = _LEAF_SIZERS.get(value_type)
        if leaf is not None:
            leaf_bytes = leaf(value)
            if leaf_bytes == 0 or id(value) in self._seen:
                return 0
            self._seen[id(value)] = value
            return leaf_bytes
        if id(value) in self._seen:
            return 0
        self._seen[id(value)] = value
        if depth > _MAX_DEPTH or self._nodes_left <= 0:
            return _safe_getsizeof(value)
        self._nodes_left -= 1
        if self._nodes_left == 0:
            logger.debug("sizing budget of %d objects spent; charging the rest of the value shallowly", _NODE_BUDGET)
        try:
            return _resolve_sizer(value_type)(self, value, depth)
        except Exception:
            logger.debug("sizing %s failed; charging sys.getsizeof", value_type.__name__, exc_info=True)
            return _safe_getsizeof(value)

    def _elements_size(
        self, elements: Iterable, length: int, draw_sample: Callable[[int], list], measure: Callable[[Any], int]
    ) -> int:
        """Charge ``length`` elements: every one when few, else a sample from ``draw_sample(count)``.

        Samples come as two interleaved halves. The first half pays for what
        elements share (a repeated symbol string, common dict keys); the second,
        measured after it, costs only what its elements own, so only the second
        half's mean is extrapolated to the unsampled rest.
        """
        count = _SAMPLE_COUNT if self._open_samples == 0 else _NESTED_SAMPLE_COUNT
        if length <= count:
            return sum(map(measure, elements))
        sample = draw_sample(count)
        first_half = sample[: (len(sample) + 1) // 2]
        second_half = sample[len(first_half) :]
        self._open_samples += 1
        try:
            first_bytes = sum(map(measure, first_half))
            second_bytes = sum(map(measure, second_half))
        finally:
            self._open_samples -= 1
        if not second_half:
            return first_bytes
        unsampled = length - len(sample)
        return first_bytes + second_bytes + unsampled * second_bytes // len(second_half)

    def _sequence_size(self, value: Any, depth: int) -> int:
        length = len(value)

        def draw_sample(count: int) -> list:
            return [value[position] for position in _spread_positions(length, count)]

        measure = functools.partial(self.size, depth=depth + 1)
        return _getsizeof(value) + self._elements_size(value, length, draw_sample, measure)

    def _set_size(self, value: Any, depth: int) -> int:
        sample_elements = functools.partial(_set_sample, value)
        measure = functools.partial(self.size, depth=depth + 1)
        return _getsizeof(value) + self._elements_size(value, len(value), sample_elements, measure)

    def _dict_size(self, value: dict, depth: int) -> int:
        def measure_item(item: tuple) -> int:
            return self.size(item[0], depth + 1) + self.size(item[1], depth + 1)

        sample_items = functools.partial(_dict_sample, value)
        return _getsizeof(value) + self._elements_size(value.items(), len(value), sample_items, measure_item)

    def _memoryview_size(self, value: memoryview, depth: int) -> int:
        return _getsizeof(value) + self.size(value.obj, depth + 1)

    def _shared_size(self, value: object, depth: int) -> int:
        return 0

    def _object_size(self, value: object, depth: int) -> int:
        """sys.getsizeof plus the ``__dict__`` and ``__slots__`` contents."""
        return _getsizeof(value) + self._attributes_size(value, depth)

    def _attributes_size(self, value: object, depth: int) -> int:
        """``__dict__`` and ``__slots__`` contents of an instance."""
        total = 0
        if type(value).__dictoffset__:
            total += self._instance_dict_size(value, depth)
        for name in _slot_names(type(value)):
            slot_value = getattr(value, name, None)
            if slot_value is not None:
                total += self.size(slot_value, depth + 1)
        return total

    def _instance_dict_size(self, value: object, depth: int) -> int:
        """The instance ``__dict__`` as it was before this call looked at it.

        CPython 3.11+ keeps attributes inline and builds the dict object only
        when ``__dict__`` is read; a dict the instance did not reference before
        the read was built by it, so its object header is not charged.
        """
        referents = gc.get_referents(value)
        attributes = getattr(value, "__dict__", None)
        if type(attributes) is not dict:
            return 0
        charged_bytes = self.size(attributes, depth + 1)
        if any(referent is attributes for referent in referents):
            return charged_bytes
        return max(0, charged_bytes - _EMPTY_DICT_BYTES)

    def _ndarray_size(self, array: Any, depth: int) -> int:
        """Header plus the buffer owner a view keeps alive; object arrays add their sampled elements."""
        ndarray = sys.modules["numpy"].ndarray
        owner = array
        while isinstance(owner, ndarray) and owner.base is not None:
            owner = owner.base
        if owner is not array:
            return _NDARRAY_HEADER_BYTES + self.size(owner, depth + 1)
        total = _NDARRAY_HEADER_BYTES + array.nbytes
        if array.dtype.hasobject:
            total += self._object_elements_size(array, depth)
        return total

    def _object_elements_size(self, array: Any, depth: int) -> int:
        length = array.size

        def draw_sample(count: int) -> list:
            return array.flat[_spread_positions(length, count)].tolist()

        return self._elements_size(array.flat, length, draw_sample, functools.partial(self.size, depth=depth + 1))

    def _pandas_frame_size(self, frame: Any, depth: int) -> int:
        """A DataFrame or Series: its blocks and axes walked, fixed costs from measured constants."""
        manager = frame._mgr
        if frame.ndim == 2:
            overhead_bytes = _FRAME_OVERHEAD_BYTES + _FRAME_BLOCK_OVERHEAD_BYTES * len(manager.blocks)
        else:
            overhead_bytes = _SERIES_OVERHEAD_BYTES
        total = overhead_bytes + self._attrs_size(frame, depth)
        for block in manager.blocks:
            total += self.size(block.values, depth + 1)
        for axis in manager.axes:
            total += self.size(axis, depth + 1)
        return total

    def _attrs_size(self, frame: Any, depth: int) -> int:
        attrs = frame.__dict__.get("_attrs")
        return self.size(attrs, depth + 1) if attrs else 0

    def _pandas_index_size(self, index: Any, depth: int) -> int:
        """Index values plus what it has cached: the lookup hash table, a MultiIndex's tuples."""
        pandas = sys.modules["pandas"]
        if isinstance(index, pandas.RangeIndex):
            return _RANGE_INDEX_BYTES
        if isinstance(index, pandas.MultiIndex):
            total = _INDEX_OVERHEAD_BYTES + self.size(index._levels, depth + 1) + self.size(index._codes, depth + 1)
        else:
            total = _INDEX_OVERHEAD_BYTES + self.size(index._data, depth + 1)
        for name, cached in index._cache.items():
            if name == "_engine":
                total += _INDEX_ENGINE_OVERHEAD_BYTES + cached.sizeof(deep=False)
            else:
                total += self.size(cached, depth + 1)
        return total

    def _extension_array_size(self, array: Any, depth: int) -> int:
        """Buffers of a pandas ExtensionArray by its storage; unknown kinds report ``nbytes``."""
        if isinstance(array, sys.modules["pandas"].Categorical):
            codes_bytes = self.size(array._codes, depth + 1)
            return _CATEGORICAL_OVERHEAD_BYTES + codes_bytes + self.size(array.categories, depth + 1)
        arrow_storage = getattr(array, "_pa_array", None)
        if arrow_storage is not None:
            return _ARROW_EXTENSION_ARRAY_OVERHEAD_BYTES + self.size(arrow_storage, depth + 1)
        numpy_storage = getattr(array, "_ndarray", None)
        if numpy_storage is not None:
            return _NDARRAY_BACKED_ARRAY_OVERHEAD_BYTES + self.size(numpy_storage, depth + 1)
        mask = getattr(array, "_mask", None)
        if mask is not None:
            return _MASKED_ARRAY_OVERHEAD_BYTES + self.size(array._data, depth + 1) + self.size(mask, depth + 1)
        return _NDARRAY_BACKED_ARRAY_OVERHEAD_BYTES + int(array.nbytes)

    def _arrow_size(self, value: Any, depth: int) -> int:
        """Arrow buffers, each charged once by address (slices share their parent's buffers)."""
        # pyarrow's __sizeof__ already adds the buffers, so only the wrapper comes from object.
        total = object.__sizeof__(value)
        for array in _arrow_arrays(value):
            for buffer in array.buffers():
                if buffer is not None and buffer.address not in self._seen_buffer_addresses:
                    self._seen_buffer_addresses.add(buffer.address)
                    total += -(-buffer.size // _ARROW_ALIGNMENT_BYTES) * _ARROW_ALIGNMENT_BYTES
        return total


def _arrow_arrays(value: Any) -> list[Any]:
    """The pyarrow Arrays (dictionaries included) holding an Array, ChunkedArray, RecordBatch or Table."""
    chunks = getattr(value, "chunks", None)
    if chunks is not None:
        return [array for chunk in chunks for array in _arrow_arrays(chunk)]
    columns = getattr(value, "columns", None)
    if columns is not None:
        return [array for column in columns for array in _arrow_arrays(column)]
    dictionary = getattr(value, "dictionary", None)
    return [value] if dictionary is None else [value, dictionary]


_CONTAINER_SIZERS: dict[type, Callable[[_Walker, Any, int], int]] = {
    list: _Walker._sequence_size,
    tuple: _Walker._sequence_size,
    deque: _Walker._sequence_size,
    set: _Walker._set_size,
    frozenset: _Walker._set_size,
    dict: _Walker._dict_size,
    memoryview: _Walker._memoryview_size,
}


@functools.lru_cache(maxsize=512)
def _slot_names(value_type: type) -> tuple[str, ...]:
    """Instance slot names declared along the MRO (``__dict__``/``__weakref__`` excluded)."""
    names: list[str] = []
    for klass in value_type.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{name}"
            names.append(name)
    return tuple(names)


def _subclass_sizer(container_sizer: Callable[[_Walker, Any, int], int]) -> Callable[[_Walker, Any, int], int]:
    """Sizer for a subclass of a builtin container: the container's size plus the subclass's attributes."""

    def size_subclass(walker: _Walker, value: Any, depth: int) -> int:
        return container_sizer(walker, value, depth) + walker._attributes_size(value, depth)

    return size_subclass


@functools.lru_cache(maxsize=512)
def _resolve_sizer(value_type: type) -> Callable[[_Walker, Any, int], int]:
    """Sizer for a type; cached per type since only the type decides it.

    A type seen before numpy/pandas/pyarrow were imported cannot belong to them,
    so caching the answer stays correct after they are imported.
    """
    sizer = _CONTAINER_SIZERS.get(value_type)
    if sizer is not None:
        return sizer
    if issubclass(value_type, _SHARED_TYPES):
        return _Walker._shared_size
    for klass in value_type.__mro__[1:]:
        if klass in _CONTAINER_SIZERS:
            return _subclass_sizer(_CONTAINER_SIZERS[klass])
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if issubclass(value_type, numpy.ndarray):
            return _Walker._ndarray_size
        if issubclass(value_type, numpy.dtype):
            return _Walker._shared_size
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if issubclass(value_type, pandas.api.extensions.ExtensionDtype):
            return _Walker._shared_size
        if issubclass(value_type, (pandas.DataFrame, pandas.Series)):
            return _Walker._pandas_frame_size
        if issubclass(value_type, pandas.Index):
            return _Walker._pandas_index_size
        if issubclass(value_type, pandas.api.extensions.ExtensionArray):
            return _Walker._extension_array_size
    pyarrow = sys.modules.get("pyarrow")
    arrow_types = () if pyarrow is None else (pyarrow.Array, pyarrow.ChunkedArray, pyarrow.RecordBatch, pyarrow.Table)
    if issubclass(value_type, arrow_types):
        return _Walker._arrow_size
    return _Walker._object_size
