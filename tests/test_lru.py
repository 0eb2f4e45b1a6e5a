"""``LruCache``: the least recently *used* entry goes first, not the oldest written."""

import pytest

from stock_lstm.lru import LruCache


def test_reading_an_entry_keeps_it_and_the_least_recent_is_dropped() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0


def test_a_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_size"):
        LruCache(0)


def test_update_replaces_under_the_lock_and_pop_removes() -> None:
    from stock_lstm.lru import LruCache

    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.update("a", lambda value: value + 10)
    cache.update("b", lambda value: None)  # None keeps the value
    cache.update("missing", lambda value: 99)  # nothing to change, nothing added
    assert (cache.get("a"), cache.get("b"), cache.get("missing")) == (11, 2, None)
    assert cache.pop("a") == 11 and cache.pop("a") is None and len(cache) == 1
