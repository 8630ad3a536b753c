"""One bounded store for what the web UI holds on the server per browser session: the Chat tab's conversations
(:mod:`ui.tab_chat`) and the Quiz tab's quizzes (:mod:`ui.quiz_state`).

The browser's ``gr.State`` holds an id; the server keeps what cannot travel to the browser (a model's follow-up
history, a quiz being made in a thread) under that id in a :class:`SessionStore`: least recently used first out
once it holds more than ``capacity``, so a server that runs for weeks does not grow with every tab ever opened.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Set by hand, not measured: far more browser tabs than one study machine serves at once (each held value is a
# few kB: turns, a follow-up history, a quiz's items), and small enough that a server left running for weeks
# stays bounded. An evicted conversation or quiz is rebuilt from what its browser still holds.
CAPACITY = 256


class SessionStore(Generic[T]):
    """Values by key, least recently used dropped first once more than ``capacity`` are held. Thread-safe:
    Gradio runs events in threads. ``factory`` makes the value of a key seen for the first time
    (:meth:`get_or_create`); ``on_evict`` is called with each value dropped for room (outside the lock), not
    with those taken out by :meth:`pop`: the caller of ``pop`` finishes its value itself."""

    def __init__(self, factory: Callable[[], T], capacity: int = CAPACITY,
                 on_evict: Callable[[T], object] | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._factory = factory
        self._on_evict = on_evict
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: str | None) -> T | None:
        """The value of ``key`` (now the most recently used), or None when there is none."""
        with self._lock:
            value = self._items.get(key or "")
            if value is not None:
                self._items.move_to_end(key or "")
            return value

    def get_or_create(self, key: str) -> T:
        """The value of ``key``, made by the factory on first use (the oldest dropped if that makes one too
        many)."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                return value
            value = self._items[key] = self._factory()
            gone = self._trim()
        self._evicted(gone)
        return value

    def put(self, key: str, value: T) -> T | None:
        """Hold ``value`` under ``key`` (now the most recently used); returns the value it replaced, if any."""
        with self._lock:
            old = self._items.pop(key, None)
            self._items[key] = value
            gone = self._trim()
        self._evicted(gone)
        return old

    def pop(self, key: str | None) -> T | None:
        """Take ``key``'s value out (None when there is none); ``on_evict`` is not called for it."""
        with self._lock:
            return self._items.pop(key or "", None)

    def _trim(self) -> list[T]:
        gone = []
        while len(self._items) > self.capacity:
            gone.append(self._items.popitem(last=False)[1])
        return gone

    def _evicted(self, gone: list[T]) -> None:
        if self._on_evict is not None:
            for value in gone:
                self._on_evict(value)
