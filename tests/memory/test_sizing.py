"""sizeof: agreement with the bytes tracemalloc sees freed, identity de-duplication, guards, fallbacks."""

from __future__ import annotations

import enum
import logging
import sys
from collections import OrderedDict, deque

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto_bot.memory import sizing
from crypto_bot.memory.sizing import sizeof

ROWS = 10_000
SYMBOLS = [f"{base}/USDT" for base in ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "AVAX", "LINK")]
TOLERANCE_RATIO = 0.25


def assert_close_to_truth(value: object, truth_bytes: int) -> None:
    estimate_bytes = sizeof(value)
    assert abs(estimate_bytes - truth_bytes) <= TOLERANCE_RATIO * truth_bytes, (estimate_bytes, truth_bytes)


def ohlcv(dtype: type) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    columns = {name: rng.random(ROWS).astype(dtype) for name in ("open", "high", "low", "close", "volume")}
    return pd.DataFrame(columns, index=pd.date_range("2024-01-01", periods=ROWS, freq="min"))


def repeated_symbols() -> pd.DataFrame:
    symbols = pd.Series([SYMBOLS[row % len(SYMBOLS)] for row in range(ROWS)], dtype=object)
    return pd.DataFrame({"symbol": symbols, "price": np.random.default_rng(2).random(ROWS)})


def order_ids() -> list[str]:
    return [f"order-{row:012d}" for row in range(ROWS)]


def order_book() -> dict[str, list[list[float]]]:
    prices = (30_000 + np.random.default_rng(3).random(1_000) * 100).tolist()
    return {
        "bids": [[price, price / 1e5] for price in prices[:500]],
        "asks": [[price, price / 1e5] for price in prices[500:]],
    }


def trades() -> list[dict[str, object]]:
    prices = (30_000 + np.random.default_rng(4).random(2_000) * 100).tolist()
    return [
        {
            "id": str(900_000_000 + trade),
            "price": price,
            "amount": price / 1e6,
            "side": "buy",
            "timestamp": 1_700_000_000_000 + trade,
        }
        for trade, price in enumerate(prices)
    ]


# ------------------------------------------------------------ agreement with tracemalloc


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ohlcv_frame_matches_released_bytes(measure_released_bytes, dtype):
    assert_close_to_truth(ohlcv(dtype), measure_released_bytes(lambda: ohlcv(dtype)))


def test_repeated_symbol_column_matches_released_bytes(measure_released_bytes):
    assert_close_to_truth(repeated_symbols(), measure_released_bytes(repeated_symbols))


def test_unique_object_strings_series_matches_released_bytes(measure_released_bytes):
    def build() -> pd.Series:
        return pd.Series(order_ids(), dtype=object)

    assert_close_to_truth(build(), measure_released_bytes(build))


def test_arrow_string_series_matches_released_bytes(measure_released_bytes):
    pytest.importorskip("pyarrow")

    def build() -> pd.Series:
        return pd.Series(order_ids(), dtype="str")

    assert_close_to_truth(build(), measure_released_bytes(build))


def test_arrow_table_matches_released_bytes(measure_released_bytes):
    pyarrow = pytest.importorskip("pyarrow")

    def build() -> object:
        return pyarrow.table({"id": order_ids(), "price": np.arange(ROWS, dtype=np.float64)})

    assert_close_to_truth(build(), measure_released_bytes(build))


def test_categorical_series_matches_released_bytes(measure_released_bytes):
    def build() -> pd.Series:
        return pd.Series([SYMBOLS[row % len(SYMBOLS)] for row in range(ROWS)], dtype="category")

    assert_close_to_truth(build(), measure_released_bytes(build))


def test_index_lookup_table_is_charged(measure_released_bytes):
    def build() -> pd.DatetimeIndex:
        index = pd.date_range("2024-01-01", periods=ROWS, freq="min")
        index.get_loc(index[10])
        return index

    assert_close_to_truth(build(), measure_released_bytes(build))


def test_array_view_matches_released_bytes(measure_released_bytes):
    def build() -> np.ndarray:
        return np.random.default_rng(5).random((ROWS, 5))[:100]

    assert_close_to_truth(build(), measure_released_bytes(build))


def test_order_book_matches_released_bytes(measure_released_bytes):
    assert_close_to_truth(order_book(), measure_released_bytes(order_book))


def test_trade_dicts_match_released_bytes(measure_released_bytes):
    assert_close_to_truth(trades(), measure_released_bytes(trades))


def test_unique_strings_list_matches_released_bytes(measure_released_bytes):
    assert_close_to_truth(order_ids(), measure_released_bytes(order_ids))


@pytest.mark.parametrize(
    "build",
    [lambda: {order_id: float(row) for row, order_id in enumerate(order_ids())}, lambda: set(order_ids())],
    ids=["dict", "set"],
)
def test_long_hash_containers_match_released_bytes(measure_released_bytes, build):
    assert_close_to_truth(build(), measure_released_bytes(build))


def test_instances_are_charged_as_they_were_before_their_attributes_were_read(measure_released_bytes):
    class Fill:
        def __init__(self, price: float) -> None:
            self.price = price
            self.amount = price * 2

    def build() -> list[Fill]:
        return [Fill(float(row) + 0.5) for row in range(ROWS)]

    measure_released_bytes(build)  # the class's first instances are laid out differently
    assert_close_to_truth(build(), measure_released_bytes(build))


@pytest.mark.parametrize(
    "build",
    [lambda: "x" * 100_000, lambda: b"x" * 100_000, lambda: bytearray(100_000)],
    ids=["str", "bytes", "bytearray"],
)
def test_long_text_and_bytes_match_released_bytes(measure_released_bytes, build):
    assert_close_to_truth(build(), measure_released_bytes(build))


# ------------------------------------------------------------------- what is charged


def test_view_is_charged_for_the_base_it_keeps_alive():
    base = np.zeros((ROWS, 5))
    assert sizeof(base[:100]) >= base.nbytes


def test_views_of_one_base_are_charged_for_it_once():
    base = np.zeros(ROWS)
    assert sizeof([base[:10], base[10:20]]) < 1.5 * base.nbytes


def test_same_object_twice_in_a_list_is_counted_once():
    payload = "p" * 10_000
    assert sizeof([payload, payload]) == sys.getsizeof([payload, payload]) + sys.getsizeof(payload)


@pytest.mark.parametrize("arrange", [lambda p, q: (p, p), lambda p, q: (p, q, p), lambda p, q: (q, p, p, q)])
def test_an_object_repeated_in_a_small_tuple_is_counted_once(arrange):
    payload, price = "p" * 10_000, 1.5
    value = arrange(payload, price)
    distinct = {id(item): item for item in value}.values()
    assert sizeof(value) == sys.getsizeof(value) + sum(map(sys.getsizeof, distinct))


def test_one_string_repeated_through_a_long_list_is_not_extrapolated():
    payload = "p" * 1_000
    repeated = [payload] * ROWS
    assert sizeof(repeated) == sys.getsizeof(repeated) + sys.getsizeof(payload)


def test_shared_symbol_strings_are_counted_once_in_an_object_column():
    frame = repeated_symbols()
    pointer_and_float_bytes = 16 * ROWS
    assert sizeof(frame) < pointer_and_float_bytes + 20_000
    assert sizeof(frame) < frame.memory_usage(deep=True).sum() / 3


def test_shared_dict_keys_are_not_extrapolated():
    shared_key = "k" * 1_000
    rows = [{shared_key: float(row)} for row in range(ROWS)]
    per_row_bytes = sys.getsizeof(rows[0]) + sys.getsizeof(0.5) + 8
    assert sizeof(rows) < per_row_bytes * ROWS + 2 * sys.getsizeof(shared_key) + sys.getsizeof(rows)


def test_object_attributes_are_charged():
    class Holder:
        def __init__(self) -> None:
            self.payload = "p" * 10_000

    assert sizeof(Holder()) > 10_000


def test_slot_attributes_are_charged():
    class Holder:
        __slots__ = ("__payload",)

        def __init__(self) -> None:
            self.__payload = "p" * 10_000

    assert sizeof(Holder()) > 10_000


def test_dict_subclass_is_charged_for_contents_and_attributes():
    class Tagged(OrderedDict):
        pass

    tagged = Tagged(payload="p" * 10_000)
    tagged.note = "n" * 10_000
    assert sizeof(tagged) > 20_000


def test_deque_contents_are_charged():
    ids = order_ids()
    assert sizeof(deque(ids)) > len(ids) * sys.getsizeof(ids[0])


def test_enum_members_are_not_charged():
    class Side(enum.Enum):
        BUY = "buy"

    assert sizeof(Side.BUY) == 0


def test_scalars_are_sized_without_walking(monkeypatch):
    def refuse_walk() -> None:
        raise AssertionError("a scalar reached the walker")

    monkeypatch.setattr(sizing, "_Walker", refuse_walk)
    assert [sizeof(7), sizeof(None), sizeof(True)] == [0, 0, 0]
    assert sizeof(10**12) == sys.getsizeof(10**12)
    assert sizeof(2.5) == sys.getsizeof(2.5)
    assert sizeof("symbol") == sys.getsizeof("symbol")
    pair = (1.5, "BTC/USDT")
    assert sizeof(pair) == sys.getsizeof(pair) + sys.getsizeof(1.5) + sys.getsizeof("BTC/USDT")


# ------------------------------------------------------------------- guards and fallbacks


def test_self_referential_containers_terminate():
    loop: list = []
    loop.append(loop)
    mapping: dict = {}
    mapping["self"] = mapping
    assert sizeof(loop) == sys.getsizeof(loop)
    assert sizeof(mapping) == sys.getsizeof(mapping) + sys.getsizeof("self")


def test_deep_nesting_terminates_after_charging_the_guarded_depth():
    nested: list = []
    for _ in range(50_000):
        nested = [nested]
    assert sizeof(nested) >= sizing._MAX_DEPTH * sys.getsizeof([nested])


def test_containers_past_the_node_budget_are_charged_shallowly(monkeypatch, caplog):
    monkeypatch.setattr(sizing, "_NODE_BUDGET", 10)
    rows = [[float(row)] for row in range(100)]
    shallow_bytes = sys.getsizeof(rows) + sum(map(sys.getsizeof, rows))
    with caplog.at_level(logging.DEBUG, logger=sizing.__name__):
        estimate_bytes = sizeof(rows)
    assert shallow_bytes < estimate_bytes < shallow_bytes + 20 * sys.getsizeof(0.5)
    assert "budget" in caplog.text


def test_object_whose_sizeof_raises_falls_back_with_a_debug_log(caplog):
    class Broken:
        def __sizeof__(self) -> int:
            raise RuntimeError("no size")

    with caplog.at_level(logging.DEBUG, logger=sizing.__name__):
        assert sizeof(Broken()) > 0
        assert sizeof([Broken(), "p" * 1_000]) > 1_000
    assert "Broken" in caplog.text


def test_object_whose_attributes_raise_falls_back():
    class Hostile:
        def __getattribute__(self, name: str) -> object:
            raise RuntimeError(name)

    assert sizeof(Hostile()) > 0


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda children: (
        st.lists(children)
        | st.dictionaries(st.text(), children)
        | st.tuples(children, children)
        | st.frozensets(st.integers())
    ),
    max_leaves=40,
)


@settings(max_examples=100, deadline=None)
@given(json_like)
def test_size_is_never_negative(value):
    assert sizeof(value) >= 0
