"""Dict-like views over a ManagedCache, so bot code written for plain dict caches keeps working.

Two layouts occur in real bots and both work: flat `{symbol: value}` and multi-timeframe
`{timeframe: {symbol: value}}`. In the nested layout an entry is stored under the key
`(timeframe, symbol)`, so every value is held once, by the managed cache, and evicted by it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, MutableMapping
from typing import Any

from crypto_bot.memory import ManagedCache

_MISSING: Any = object()


class TimeframeView(MutableMapping):
    """The `{symbol: value}` mapping of one timeframe inside a nested cache."""

    __slots__ = ("_cache", "_timeframe")

    def __init__(self, cache: ManagedCache, timeframe: Hashable) -> None:
        self._cache = cache
        self._timeframe = timeframe

    def __getitem__(self, symbol: Hashable) -> Any:
        value = self._cache.get((self._timeframe, symbol), _MISSING)
        if value is _MISSING:
            raise KeyError(symbol)
        return value

    def __setitem__(self, symbol: Hashable, value: Any) -> None:
        self._cache.put((self._timeframe, symbol), value)

    def __delitem__(self, symbol: Hashable) -> None:
        if not self._cache.delete((self._timeframe, symbol)):
            raise KeyError(symbol)

    def __contains__(self, symbol: object) -> bool:
        return (self._timeframe, symbol) in self._cache

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._symbols())

    def __len__(self) -> int:
        return len(self._symbols())

    def _symbols(self) -> list[Hashable]:
        tf = self._timeframe
        return [key[1] for key in self._cache.keys() if isinstance(key, tuple) and len(key) == 2 and key[0] == tf]

    def __repr__(self) -> str:
        return f"TimeframeView({self._timeframe!r}, symbols={len(self)})"


class CacheView(MutableMapping):
    """A mutable mapping over a ManagedCache that accepts both the flat and the nested layout.

    Assigning a mapping to a key (`view["1h"] = {"BTC/USDT": df}`) declares a timeframe and
    stores its entries under `(timeframe, symbol)`; reading `view["1h"]` returns its
    `TimeframeView`. Any other value is stored flat under its key.
    """

    __slots__ = ("cache", "_timeframes")

    def __init__(self, cache: ManagedCache) -> None:
        self.cache = cache
        self._timeframes: dict[Hashable, None] = {}

    def load(self, source: Mapping[Hashable, Any]) -> None:
        """Move every entry of `source` (either layout) into the cache."""
        for key, value in source.items():
            self[key] = value

    def __getitem__(self, key: Hashable) -> Any:
        if key in self._timeframes:
            return TimeframeView(self.cache, key)
        value = self.cache.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Hashable, value: Any) -> None:
        if isinstance(value, Mapping):
            view = TimeframeView(self.cache, key)
            for symbol in list(view):
                del view[symbol]
            self._timeframes[key] = None
            for symbol, item in value.items():
                view[symbol] = item
        else:
            self.cache.put(key, value)

    def __delitem__(self, key: Hashable) -> None:
        if key in self._timeframes:
            view = TimeframeView(self.cache, key)
            for symbol in list(view):
                del view[symbol]
            del self._timeframes[key]
        elif not self.cache.delete(key):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self._timeframes or key in self.cache

    def setdefault(self, key: Hashable, default: Any = None) -> Any:
        """As dict.setdefault, but a mapping default comes back as the stored timeframe's view.

        So `view.setdefault(tf, {})[symbol] = df` writes into the cache, as it would into a dict of dicts.
        """
        try:
            return self[key]
        except KeyError:
            self[key] = default
        return self[key] if isinstance(default, Mapping) else default

    def pop(self, key: Hashable, default: Any = _MISSING) -> Any:
        """As dict.pop; a timeframe comes back as a plain `{symbol: value}` dict (its view would be empty)."""
        if key in self._timeframes:
            entries = dict(TimeframeView(self.cache, key))
            del self[key]
            return entries
        value = self.cache.pop(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return value

    def popitem(self) -> tuple[Hashable, Any]:
        for key in self:
            return key, self.pop(key)
        raise KeyError("popitem(): the cache view is empty")

    def _flat_keys(self) -> list[Hashable]:
        return [key for key in self.cache.keys() if not (isinstance(key, tuple) and len(key) == 2 and key[0] in self._timeframes)]

    def __iter__(self) -> Iterator[Hashable]:
        return iter([*self._timeframes, *self._flat_keys()])

    def __len__(self) -> int:
        return len(self._timeframes) + len(self._flat_keys())

    def clear(self) -> None:
        self.cache.clear()
        self._timeframes.clear()

    def __repr__(self) -> str:
        return f"CacheView({self.cache.name!r}, entries={len(self.cache)}, timeframes={list(self._timeframes)})"
