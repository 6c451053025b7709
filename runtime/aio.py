"""Await from a protogen handler: coroutines on an asyncio loop in a helper thread.

Handlers run on protogen's event loop and must not block it, but a reply may
need an `await` (an async database driver, an HTTP call). `CoroutineRunner`
runs such coroutines on an asyncio loop of its own, in one helper thread, and
writes each result back to its connection through the thread-safe
`conn.async_write`::

    from protogen.runtime.aio import CoroutineRunner

    runner = CoroutineRunner()              # the thread starts on first use

    class Api(KvHandler):                   # generated from your spec
        def on_request(self, conn, frame):
            runner.spawn(conn, self.lookup(bytes(frame.key)))

        async def lookup(self, key):        # runs on the runner's asyncio loop
            value = await database.get(key)
            return Response(value=value)    # sent to conn: frame.encode() or bytes

        def on_close(self, conn, err):
            runner.forget(conn)             # cancels what conn still waits for
            return super().on_close(conn, err)

Guarantees:

* **Order.** Each connection's results are written in the order their
  coroutines were spawned, whatever order they complete in: a result that is
  ready early waits for the ones spawned before it. A coroutine returning
  None writes nothing (and holds nothing up once it is done).
* **Bounded.** At most `max_in_flight_per_conn` coroutines per connection and
  `max_in_flight` in all; `spawn` beyond either raises `RunnerOverload` at
  once (the protogen loop never waits), for the handler to answer "busy" or
  close the connection. The coroutine object is closed, not leaked.
* **Errors.** A coroutine that raises is logged with its traceback and its
  connection is closed (as the runtime does for a handler callback that
  raises); other connections are not affected.
* **Fork-aware.** The helper thread starts on the first `spawn` in each
  process, so every worker of the multi-process engine gets its own.

`spawn` is meant to be called on the protogen loop thread (from a handler
callback); the results are written from the helper thread, so the only
`Conn` methods used are the thread-safe ones.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Self

__all__ = ["CoroutineRunner", "RunnerClosed", "RunnerOverload"]

logger = logging.getLogger("protogen.runtime.aio")

DEFAULT_MAX_IN_FLIGHT_PER_CONN = 64
DEFAULT_MAX_IN_FLIGHT = 10_000


class RunnerOverload(RuntimeError):
    """`spawn` refused: the connection (or the runner) has too many in flight."""


class RunnerClosed(RuntimeError):
    """`spawn` after `close()`."""


class _ConnState:
    """One connection's coroutines. `spawned` and `in_flight` change under the
    runner's lock; `next_to_write` and `ready` only on the helper thread."""

    __slots__ = ("in_flight", "next_to_write", "ready", "spawned", "tasks")

    def __init__(self) -> None:
        self.spawned = 0
        self.in_flight = 0
        self.next_to_write = 0
        self.ready: dict[int, bytes | None] = {}
        self.tasks: set[asyncio.Task[Any]] = set()


class CoroutineRunner:
    """An asyncio loop in a helper thread that answers protogen connections."""

    def __init__(
        self,
        *,
        max_in_flight_per_conn: int = DEFAULT_MAX_IN_FLIGHT_PER_CONN,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        name: str = "protogen-aio",
    ) -> None:
        if max_in_flight_per_conn < 1 or max_in_flight < 1:
            raise ValueError("CoroutineRunner limits must be at least 1")
        self.max_in_flight_per_conn = max_in_flight_per_conn
        self.max_in_flight = max_in_flight
        self._loop_factory = loop_factory or asyncio.new_event_loop
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._conns: dict[Any, _ConnState] = {}
        self._in_flight = 0
        self._closed = False

    # -- the protogen loop's side -----------------------------------------------------

    def spawn(self, conn: Any, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` on the helper loop; write its result to `conn` in order.

        The result may be a frame (anything with `encode()`), bytes-like, or
        None (nothing to write). Raises RunnerOverload when the limits are
        reached and RunnerClosed after `close()`; `coro` is closed then.
        """
        try:
            loop = self._running_loop()
            with self._lock:
                state = self._conns.get(conn)
                if state is None:
                    state = self._conns[conn] = _ConnState()
                if state.in_flight >= self.max_in_flight_per_conn:
                    raise RunnerOverload(
                        f"{state.in_flight} coroutines already in flight for {conn!r}"
                    )
                if self._in_flight >= self.max_in_flight:
                    raise RunnerOverload(
                        f"{self._in_flight} coroutines already in flight in all"
                    )
                sequence = state.spawned
                state.spawned += 1
                state.in_flight += 1
                self._in_flight += 1
        except BaseException:
            coro.close()  # never started: no "was never awaited" warning
            raise
        loop.call_soon_threadsafe(self._start, conn, state, sequence, coro)

    def in_flight(self, conn: Any | None = None) -> int:
        """Coroutines spawned and not yet written back (for `conn`, or in all)."""
        with self._lock:
            if conn is None:
                return self._in_flight
            state = self._conns.get(conn)
            return state.in_flight if state is not None else 0

    def forget(self, conn: Any) -> None:
        """`conn` closed: cancel its coroutines and drop its state (any thread)."""
        with self._lock:
            state = self._conns.pop(conn, None)
            loop = self._loop
        if state is not None and loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._cancel, state)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def close(self, timeout: float | None = 5.0) -> None:
        """Cancel what is in flight, stop the helper loop and join its thread."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if self._pid == os.getpid():
            try:
                loop.call_soon_threadsafe(self._shutdown)
            except RuntimeError:
                pass
            thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the helper thread ---------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RunnerClosed("spawn() on a closed CoroutineRunner")
            if self._loop is not None and self._pid == os.getpid():
                return self._loop
            # First use in this process (or a forked child, where the parent's
            # thread does not exist): start a loop and its thread.
            self._conns.clear()
            self._in_flight = 0
            loop = self._loop_factory()
            started = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(loop, started), name=self._name, daemon=True
            )
            thread.start()
            started.wait()
            self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _start(
        self,
        conn: Any,
        state: _ConnState,
        sequence: int,
        coro: Coroutine[Any, Any, Any],
    ) -> None:
        task = asyncio.ensure_future(self._result(conn, coro))
        state.tasks.add(task)
        task.add_done_callback(
            functools.partial(self._deliver, conn, state, sequence, coro)
        )

    @staticmethod
    async def _result(conn: Any, coro: Coroutine[Any, Any, Any]) -> bytes | None:
        try:
            return _as_bytes(await coro)
        except Exception as exc:
            logger.error(
                "protogen: a coroutine for %r raised; closing the connection",
                conn,
                exc_info=exc,
            )
            conn.close()
            return None

    def _deliver(
        self,
        conn: Any,
        state: _ConnState,
        sequence: int,
        coro: Coroutine[Any, Any, Any],
        task: asyncio.Task[bytes | None],
    ) -> None:
        """A task is done (or cancelled, maybe before it started)."""
        state.tasks.discard(task)
        if task.cancelled():
            coro.close()  # a no-op once it ran; else no "never awaited" warning
            data = None
        else:
            data = task.result()
        # Even a failed one takes its turn, so the results after it go out.
        state.ready[sequence] = data
        # Write every result that is next in spawn order (this one, and any
        # later ones that finished first and were waiting for it).
        written = 0
        while state.next_to_write in state.ready:
            chunk = state.ready.pop(state.next_to_write)
            state.next_to_write += 1
            written += 1
            if chunk:
                conn.async_write(chunk)
        if written:
            self._done(state, written)

    def _done(self, state: _ConnState, count: int) -> None:
        with self._lock:
            state.in_flight -= count
            self._in_flight -= count

    @staticmethod
    def _cancel(state: _ConnState) -> None:
        for task in list(state.tasks):
            task.cancel()

    def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.stop()


def _as_bytes(result: Any) -> bytes | None:
    if result is None:
        return None
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result)
    encode = getattr(result, "encode", None)
    if encode is None:
        raise TypeError(
            f"a coroutine's result must be a frame, bytes or None, not {type(result).__name__}"
        )
    return bytes(encode())
