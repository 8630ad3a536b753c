"""One model, two kinds of work: a student's requests (answers, chats, quizzes, guides) always go first; the
question bank (:mod:`rag.quiz.bank`) fills only while the app is idle.

:class:`ModelGate` is the priority rule. Interactive work holds it while it runs (:meth:`ModelGate.interactive`,
or every model call through :class:`InteractiveLLM`); background work asks :meth:`ModelGate.wait_idle` before
each model call and gets its turn only when no interactive work is running and none has run for ``idle_s``
seconds (so the gaps between the model calls of one answer never let the bank in). A background generation
that is running when interactive work arrives is cut off at its next token (:class:`BackgroundLLM` raises
:class:`Preempted`; the bank tries that item again later). On the local llama.cpp backend its prompt
evaluation is cut off too (:class:`LlamaAbort`: a passage's prompt is seconds of work on 2 cores, with no token
to stop at), so a student's request never waits for the bank's work, only for llama.cpp to notice.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rag.errors import StudybotError
from rag.llm import LLM, Request, Response


class Preempted(Exception):  # noqa: N818 - a signal, not an error the user sees
    """A background generation was cut off for interactive work (the bank tries the item again later)."""


class ModelGate:
    """Who may use the model now: interactive work at once, background work only when the app is idle."""

    def __init__(self, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        """``idle_s``: how long the app must have been idle before background work runs (``quiz.bank_idle_s``)."""
        self.idle_s = idle_s
        self._clock = clock
        self._cond = threading.Condition()
        self._active = 0  # interactive requests running (or waiting for the model)
        self._last_end = -float("inf")
        self.preemptions = 0  # background generations cut off (benches, tests)
        self.waiting = 0  # background calls waiting for their turn (tests)
        self.busy_since = 0.0  # when interactive work last started while none ran
        self.yields: list[float] = []  # seconds from interactive work arriving to the model being released

    @property
    def busy(self) -> bool:
        """Interactive work is running or waiting."""
        return self._active > 0

    def enter(self) -> None:
        with self._cond:
            if not self._active:
                self.busy_since = self._clock()
            self._active += 1
            self._cond.notify_all()

    def yielded(self) -> None:
        """A background call cut off for interactive work has released the model (how long it took is kept in
        :attr:`yields`, the last 1,000)."""
        self.preemptions += 1
        self.yields = [*self.yields[-999:], self._clock() - self.busy_since]

    def leave(self) -> None:
        with self._cond:
            self._active = max(0, self._active - 1)
            self._last_end = self._clock()
            self._cond.notify_all()

    @contextlib.contextmanager
    def interactive(self) -> Iterator[None]:
        """Hold the gate for a student's request (the bank waits, and a running bank generation stops)."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def guard(self, it: Iterator[Any]) -> Iterator[Any]:
        """An iterator of interactive work (a streamed answer) that holds the gate until it is exhausted or
        closed (entered now, left once)."""
        self.enter()
        return _Held(it, self.leave)

    def idle_for(self) -> float:
        """Seconds since the last interactive work ended (0 while some runs)."""
        with self._cond:
            return 0.0 if self._active else self._clock() - self._last_end

    def wait_idle(self, stop: threading.Event | None = None, timeout: float | None = None) -> bool:
        """Block until the app is idle (no interactive work for ``idle_s`` seconds); False when ``stop`` is set
        or ``timeout`` passes first."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            self.waiting += 1
            try:
                while True:
                    if stop is not None and stop.is_set():
                        return False
                    now = self._clock()
                    left = self.idle_s - (now - self._last_end)
                    if not self._active and left <= 0:
                        return True
                    if deadline is not None and now >= deadline:
                        return False
                    wait = 0.5 if self._active else min(max(left, 0.01), 0.5)  # re-check stop twice a second
                    if deadline is not None:
                        wait = min(wait, max(deadline - now, 0.0))
                    self._cond.wait(wait)
            finally:
                self.waiting -= 1


class _Held:
    """An iterator that calls ``release`` once: when exhausted, failed, closed or collected."""

    def __init__(self, it: Iterator[Any], release: Callable[[], None]) -> None:
        self._it = it
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> _Held:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._it)
        except BaseException:
            self._done()
            raise

    def _done(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def close(self) -> None:
        try:
            close = getattr(self._it, "close", None)
            if close is not None:
                close()
        finally:
            self._done()

    def __del__(self) -> None:
        self._done()


class _View(LLM):
    """An LLM that forwards to ``inner`` (its name, window and any backend extras; each call's usage is on its
    :class:`Response`)."""

    def __init__(self, inner: LLM, gate: ModelGate) -> None:
        self.inner = inner
        self.gate = gate
        self.name = inner.name
        self.n_ctx = inner.n_ctx
        self.supports_suppress = inner.supports_suppress

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def __getattr__(self, name: str) -> Any:  # backend extras (load, choice_logprobs, ...)
        if name in ("inner", "gate"):
            raise AttributeError(name)
        return getattr(self.inner, name)


class InteractiveLLM(_View):
    """The model as a student's requests use it: every call holds the gate (the bank yields to it)."""

    def generate(self, messages: list[dict[str, str]], request: Request) -> Response:
        self.gate.enter()
        try:
            response = self.inner.generate(messages, request)
        except BaseException:
            self.gate.leave()
            raise
        return response.on_end(self.gate.leave)  # held until the reply is exhausted, closed or dropped

    def yes_no(self, messages: list[dict[str, str]], shared: str = "") -> float:
        with self.gate.interactive():
            return self.inner.yes_no(messages, shared)

    def keep_prefix(self, messages: list[dict[str, str]]) -> int:
        with self.gate.interactive():
            return self.inner.keep_prefix(messages)

    def __getattr__(self, name: str) -> Any:
        attr = super().__getattr__(name)
        if not callable(attr) or name.startswith("count_"):
            return attr

        def held(*args: Any, **kwargs: Any) -> Any:
            with self.gate.interactive():
                return attr(*args, **kwargs)

        return held


class LlamaAbort:
    """llama.cpp's abort callback on the local backend's context, so that a background call's prompt evaluation
    stops when interactive work arrives (llama_decode returns 2; llama-cpp-python's next evaluation removes what
    the aborted batch left in the KV cache). Set only while a background call runs and cleared after it, so an
    interactive generation never calls into Python per graph node; the callback object lives as long as this
    hook (llama.cpp may read the pointer of a call that is just ending)."""

    def __init__(self, gate: ModelGate) -> None:
        self.gate = gate
        self.running = False  # a background call is evaluating or generating
        self.aborted = False  # the callback stopped llama.cpp

    def _check(self, _data: Any) -> bool:
        if self.running and self.gate.busy:
            # Once: the backend releases the model as the error leaves it, and the student's call that takes it
            # next must not be stopped by this callback (cleared only after that).
            self.running = False
            self.aborted = True
            return True
        return False

    def arm(self, inner: LLM) -> bool:
        """Set the callback on ``inner``'s loaded model (False when it is not a loaded local llama.cpp model)."""
        set_abort = getattr(inner, "set_abort", None)
        if set_abort is None:
            return False
        self.aborted = False
        self.running = True
        if not set_abort(self._stop_now):
            self.running = False
            return False
        return True

    def _stop_now(self) -> bool:
        return self._check(None)

    def disarm(self, inner: LLM) -> None:
        """Before the backend releases the model: the callback answers False from now, and is cleared."""
        self.running = False
        set_abort = getattr(inner, "set_abort", None)
        if set_abort is not None:
            set_abort(None)
        if self.aborted:
            # The aborted call's evaluation steps were never recorded (rag.backends.llama_cpp evaluates every prompt
            # in its own steps): let the next call re-use no cached position from an older call's steps.
            forget = getattr(inner, "forget_steps", None)
            if forget is not None:
                forget()


class BackgroundLLM(_View):
    """The model as the bank uses it: each call waits until the app is idle, and a generation is cut off
    (:class:`Preempted`) at the first token after interactive work arrives, or in its prompt evaluation on the
    local llama.cpp backend (:class:`LlamaAbort`). ``stop``: a set event makes a waiting call raise
    :class:`Preempted` at once (the worker is stopping)."""

    def __init__(self, inner: LLM, gate: ModelGate, stop: threading.Event | None = None, *, wait: bool = True
                 ) -> None:
        super().__init__(inner, gate)
        self.stop = stop
        self.wait = wait
        self.calls = 0  # model calls started (the bank's cost)
        self.abort = LlamaAbort(gate)

    def generate(self, messages: list[dict[str, str]], request: Request) -> Response:
        if self.wait and not self.gate.wait_idle(self.stop):
            raise Preempted("stopping")
        response = self.inner.generate(messages, request)  # loads the model on first use
        self.calls += 1
        return response.through(self._watch)

    def _watch(self, it: Iterator[str]) -> Iterator[str]:
        armed = self.wait and self.abort.arm(self.inner)
        cut = False
        try:
            if self.wait and self.gate.busy:
                cut = True
                raise Preempted("interactive work arrived")
            try:
                for piece in it:
                    if self.wait and self.gate.busy:
                        cut = True
                        raise Preempted("interactive work arrived")
                    yield piece
            except StudybotError as exc:
                if armed and self.abort.aborted:
                    cut = True
                    raise Preempted("interactive work arrived (prompt evaluation stopped)") from exc
                raise
        finally:
            if armed:
                self.abort.disarm(self.inner)
            close = getattr(it, "close", None)
            if close is not None:
                close()  # the backend releases the model now
            if cut:
                self.gate.yielded()
