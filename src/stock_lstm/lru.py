"""A small thread-safe least-recently-used map, for the in-memory caches of a serving process."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most ``max_size`` entries; reading or writing one makes it the most recent, and
    the least recent is dropped when a new one does not fit. Every operation takes one lock."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self.max_size = max_size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)

    def update(self, key: K, change: Callable[[V], V | None]) -> None:
        """Replace ``key``'s value by ``change(value)`` under the lock, so no other thread
        writes in between (``None``: keep it). Its recency is left as it was."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                return
            changed = change(value)
            if changed is not None:
                self._items[key] = changed

    def pop(self, key: K) -> V | None:
        with self._lock:
            return self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
