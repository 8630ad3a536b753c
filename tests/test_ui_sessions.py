"""The one session store behind the Chat and Quiz tabs (ui/sessions.py): least recently used out first,
bounded by its capacity, values made on first use, evictions (not pops) handed to on_evict, safe from threads.
How the tabs use it: tests/test_ui_chat.py, tests/test_ui_quiz.py, tests/test_ui_quiz_stream.py."""

from __future__ import annotations

import threading

import pytest

from ui.sessions import CAPACITY, SessionStore


def _store(capacity: int = 3) -> tuple[SessionStore[list[str]], list[list[str]]]:
    evicted: list[list[str]] = []
    return SessionStore(list, capacity, on_evict=evicted.append), evicted


def test_get_or_create_makes_a_value_once_and_get_never_makes_one() -> None:
    store, _ = _store()
    assert store.get("a") is None and "a" not in store and len(store) == 0
    a = store.get_or_create("a")
    a.append("turn")
    assert store.get_or_create("a") is a and store.get("a") is a and store.get("a") == ["turn"]
    assert "a" in store and len(store) == 1
    assert store.get(None) is None and store.pop(None) is None


def test_the_least_recently_used_is_evicted_first_and_handed_to_on_evict() -> None:
    store, evicted = _store(capacity=3)
    values = {k: store.get_or_create(k) for k in "abc"}
    values["a"].append("a")
    store.get("a")  # used: now the newest
    store.get_or_create("d")  # one too many: b, the least recently used, goes
    assert "b" not in store and all(k in store for k in "acd") and len(store) == 3
    assert evicted == [values["b"]]
    store.put("e", ["e"])  # then c
    assert "c" not in store and evicted == [values["b"], values["c"]]
    assert store.get("a") == ["a"]  # the one in use stays


def test_put_replaces_and_returns_the_old_value_pop_takes_one_out_without_on_evict() -> None:
    store, evicted = _store(capacity=2)
    assert store.put("a", ["1"]) is None
    assert store.put("a", ["2"]) == ["1"] and store.get("a") == ["2"] and len(store) == 1
    assert store.pop("a") == ["2"] and "a" not in store and store.pop("a") is None
    assert evicted == []  # a pop is finished by its caller


def test_capacity_bounds_the_store_and_must_be_positive() -> None:
    store, evicted = _store(capacity=1)
    for k in "abcde":
        store.get_or_create(k)
    assert len(store) == 1 and "e" in store and len(evicted) == 4
    assert SessionStore(list).capacity == CAPACITY
    with pytest.raises(ValueError, match="at least 1"):
        SessionStore(list, 0)


def test_threads_lose_no_value_and_the_store_stays_bounded() -> None:
    made: list[int] = []
    lock = threading.Lock()

    def factory() -> list[str]:
        with lock:
            made.append(1)
        return []

    evicted: list[list[str]] = []
    store: SessionStore[list[str]] = SessionStore(factory, capacity=50, on_evict=evicted.append)
    start = threading.Barrier(8)

    def work(n: int) -> None:
        start.wait()
        for i in range(200):
            store.get_or_create(f"k{i % 40}")  # 40 keys every thread uses
            store.get_or_create(f"t{n}-{i}")  # and one key of this thread's own per step: pushes others out

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store) == 50
    assert len(made) == len(store) + len(evicted)  # every value made is held or was handed to on_evict
    assert len({id(v) for v in evicted}) == len(evicted)  # none evicted twice


def test_threads_asking_for_one_new_key_get_the_same_value() -> None:
    store: SessionStore[list[str]] = SessionStore(list)
    start = threading.Barrier(16)
    got: list[list[str]] = []

    def work() -> None:
        start.wait()
        got.append(store.get_or_create("conv"))

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 16 and all(v is got[0] for v in got) and len(store) == 1
