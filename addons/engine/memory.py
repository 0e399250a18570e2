"""What the engine remembers from one request to the next, bounded in bytes.

A browsing session sends the same keys, cookies and values again and again, so the engine
remembers what it worked out about them. One request can carry a value of megabytes, so every
such memory is bounded in bytes, not in entries:

- a function memo (`remembered`) keeps only calls whose arguments take at most `ENTRY_BYTES`
  (larger ones are worked out each time: that costs about what hashing them for a lookup does);
- a `Memory` (a dictionary) keeps entries of at most `budget // 16` bytes and forgets them all
  when they would take more than its `budget`.

`memo_bound()` is what the function memos can hold at most; with the detector's memories
(`detect.MEMORY_BYTES`), the extraction's (`extract.MEMO_BYTES`) and the escaped names of
`location`, the engine remembers at most `TOTAL_BYTES` (the README's *Limits* quotes it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache, wraps
from typing import Any, ParamSpec, TypeVar, cast
from urllib.parse import SplitResult
from urllib.parse import urlsplit as _urlsplit

P = ParamSpec("P")
R = TypeVar("R")

TOTAL_BYTES = 32 * 1024 * 1024
ENTRY_BYTES = 320  # the arguments of a remembered call, as `__sizeof__` counts them
ENTRY_OVERHEAD = 256  # what an entry costs besides its arguments: the cache's links, the result
_memos: list[tuple[Any, int, int]] = []  # (cached function, entries, bytes of arguments)


def remembered(
    maxsize: int, entry_bytes: int = ENTRY_BYTES
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """`functools.lru_cache(maxsize)` for calls whose arguments take at most `entry_bytes`."""

    def wrap(typed: Callable[P, R]) -> Callable[P, R]:
        function: Callable[..., Any] = typed
        cached: Any = lru_cache(maxsize)(typed)
        _memos.append((cached, maxsize, entry_bytes))

        # a wrapper of the same arity where there are no defaults (no packing of arguments)
        arity = function.__code__.co_argcount if not function.__defaults__ else 0
        call: Any
        if arity == 1:

            def call(a: Any) -> Any:
                return cached(a) if a.__sizeof__() <= entry_bytes else function(a)

        elif arity == 2:

            def call(a: Any, b: Any) -> Any:
                if a.__sizeof__() + b.__sizeof__() <= entry_bytes:
                    return cached(a, b)
                return function(a, b)

        elif arity == 3:

            def call(a: Any, b: Any, c: Any) -> Any:
                if a.__sizeof__() + b.__sizeof__() + c.__sizeof__() <= entry_bytes:
                    return cached(a, b, c)
                return function(a, b, c)

        else:

            def call(*args: Any, **kwargs: Any) -> Any:
                if not kwargs and sizes(args) <= entry_bytes:
                    return cached(*args)
                return function(*args, **kwargs)

        call = wraps(function)(call)
        call.cache_clear = cached.cache_clear
        call.cache_info = cached.cache_info
        return cast(Callable[P, R], call)

    return wrap


def size_of(*texts: str | bytes | None) -> int:
    """The bytes of the strings of an entry (what a `Memory` counts)."""
    return sum([text.__sizeof__() for text in texts])


def sizes(objects: Iterable[object]) -> int:
    """The bytes of `objects` in all, as their `__sizeof__` counts them (that is
    `sys.getsizeof` without the garbage collector's header, and a tenth of its cost)."""
    return sum([o.__sizeof__() for o in objects])


class Memory(dict[Any, Any]):
    """A dictionary that keeps its entries within `budget` bytes (as the caller counts them,
    with `size_of`): an entry larger than a sixteenth of it is not kept; when the next would not
    fit, all are forgotten, or with `oldest_first` the oldest ones until it fits."""

    __slots__ = ("_sizes", "budget", "used")  # (no instance dictionary: lookups stay fast)

    def __init__(self, budget: int, oldest_first: bool = False) -> None:
        super().__init__()
        self.budget = budget
        self.used = 0
        self._sizes: dict[Any, int] | None = {} if oldest_first else None

    def keep(self, key: Any, value: Any, size: int) -> None:
        size += ENTRY_OVERHEAD // 2  # (the dictionary's slot, the key's tuple, the value's object)
        if size > self.budget // 16:
            return
        sizes = self._sizes
        if sizes is not None and key in sizes:
            self.used -= sizes.pop(key)
            del self[key]
        if self.used + size > self.budget:
            if sizes is None:
                self.clear()
            while self.used + size > self.budget:
                oldest = next(iter(self))
                self.used -= sizes.pop(oldest) if sizes is not None else 0
                del self[oldest]
        self[key] = value
        self.used += size
        if sizes is not None:
            sizes[key] = size

    def keep_all(self, entries: dict[Any, Any], size: int) -> None:
        """Keep `entries`, of `size` bytes in all (a request's new ones, at once); none of them
        when they are more than the whole budget."""
        size += len(entries) * (ENTRY_OVERHEAD // 2)
        if self._sizes is not None or size > self.budget:
            for key, value in entries.items():  # (each with its share)
                self.keep(key, value, size // len(entries) - ENTRY_OVERHEAD // 2)
            return
        if self.used + size > self.budget:
            self.clear()
        self.update(entries)
        self.used += size

    def clear(self) -> None:
        super().clear()
        self.used = 0
        if self._sizes is not None:
            self._sizes.clear()


def memo_bound() -> int:
    """The bytes the function memos can hold at most."""
    return sum(entries * (limit + ENTRY_OVERHEAD) for _, entries, limit in _memos)


def memos_held() -> int:
    """The bytes the function memos hold now, at most (their entries times their bound)."""
    return sum(m.cache_info().currsize * (limit + ENTRY_OVERHEAD) for m, _, limit in _memos)


def clear_memos() -> None:
    for cached, _, _ in _memos:
        cached.cache_clear()


_split_afresh = getattr(_urlsplit, "__wrapped__", _urlsplit)


def urlsplit(url: str) -> SplitResult:
    """`urllib.parse.urlsplit`, whose memory of the last 128 URLs split keeps only short ones
    here (a long URL is split afresh: 128 URLs of a megabyte would stay in memory)."""
    return _urlsplit(url) if len(url) <= ENTRY_BYTES // 2 else _split_afresh(url)
