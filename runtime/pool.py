"""A goroutine-style worker pool, modelled on Go's ``ants``.

Event-loop handlers must never block: a blocking call (a database query, a
file read, a DNS lookup, a CPU-heavy computation in a C extension that
releases the GIL) stalls every connection of the loop.  The pattern is to
hand such work to a :class:`WorkerPool` and answer from the worker thread with
``conn.async_write`` (or a generated handler's ``send_threadsafe``) when the
work is done::

    from protogen.runtime import Action, EventHandler
    from protogen.runtime.pool import PoolOverload, default_pool

    class Handler(EventHandler):
        def on_traffic(self, conn):
            request = bytes(conn.next(-1))       # copy: the buffer belongs to the loop
            try:
                default_pool().submit(self.work, conn, request)
            except PoolOverload:                  # every worker busy, queue full
                conn.write(b"busy")               # or close: the client retries
            return Action.NONE

        def work(self, conn, request):            # runs in a pool thread
            conn.async_write(lookup(request))     # thread-safe; queued to the loop

Submitting from an event loop never blocks it: a task that finds every
worker busy waits in the pool's bounded queue (``queue_size``), and when that
is full too ``submit`` raises :class:`PoolOverload` on a loop thread, where
another thread would wait for room.  The handler decides what overload means
for its protocol (an error reply, closing the connection); the loop's other
connections are never held up behind the pool.

Rules of that pattern:

* Only the thread-safe ``Conn`` methods (``async_write``, ``async_writev``,
  ``wake``, ``close``) may be called from a pool task.  ``peek``/``next``/
  ``write`` belong to the loop thread.
* Copy what the task needs out of the inbound buffer before submitting: the
  loop reuses that memory as soon as ``on_traffic`` returns.
* Ordering: ``async_write`` calls made *by one thread* reach the connection in
  the order they were made.  Tasks submitted to the pool run concurrently, so
  two tasks for the same connection may finish in any order; when replies
  must follow request order, submit one task per connection that handles the
  requests sequentially, or tag replies and reorder on the loop thread.
* If the connection closes while a task runs, its ``async_write`` is dropped
  (the callback, if any, receives the error) - tasks need no locking of their
  own against the loop.

Pool semantics (as in ants):

* Threads are created lazily, up to ``capacity``.  Idle workers are kept on a
  LIFO stack, so under light load the same few threads stay warm and the
  others exit after ``expiry`` seconds of idleness.
* ``submit`` hands the task to an idle worker, starts a new worker while
  fewer than ``capacity`` are alive, else queues it (up to ``queue_size``
  tasks, run in submission order as workers free up), and otherwise blocks
  until there is room - or raises :class:`PoolOverload` when the pool is
  ``nonblocking``, when the caller is an event-loop thread, or when
  ``max_blocking`` submitters are already waiting.
* An exception raised by a task goes to ``panic_handler(exc)`` (default: it
  is logged with its traceback); it never kills the worker or the pool.
* ``running()`` counts live worker threads (busy or idle), like ants'
  ``Running``; ``free() == cap() - running()``; ``idle()`` and ``waiting()``
  expose the rest of the state.

Pools are fork-aware: in a child created with ``os.fork`` (the multi-process
engine), every pool starts empty - the parent's threads do not exist there.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable

__all__ = [
    "PoolClosed",
    "PoolError",
    "PoolOverload",
    "WorkerPool",
    "default_pool",
    "event_loop_thread",
    "in_event_loop_thread",
]

logger = logging.getLogger("protogen.runtime.pool")

DEFAULT_EXPIRY = 10.0
DEFAULT_POOL_CAPACITY = 256
DEFAULT_POOL_QUEUE = 1024  # default_pool(): tasks waiting for a busy worker

# Threads that run an event loop (the engine marks them): submit() must not
# block there, or every connection of the loop would wait for the pool.
_thread_state = threading.local()


class event_loop_thread:
    """Context manager: the current thread runs an event loop meanwhile."""

    def __enter__(self) -> None:
        _thread_state.loops = getattr(_thread_state, "loops", 0) + 1

    def __exit__(self, *exc_info: object) -> None:
        _thread_state.loops -= 1


def in_event_loop_thread() -> bool:
    """True on a thread running an engine's event loop."""
    return getattr(_thread_state, "loops", 0) > 0


PanicHandler = Callable[[BaseException], Any]


class PoolError(RuntimeError):
    """Base class of the pool's errors."""


class PoolOverload(PoolError):
    """Raised by ``submit`` when every worker is busy and the pool may not block."""


class PoolClosed(PoolError):
    """Raised by ``submit`` after ``release()`` (until ``reboot()``)."""


# A worker parked on the idle stack is woken by handing it a task (or this
# sentinel, which tells it to exit) and releasing its private lock.
_EXIT = object()


class _Worker:
    __slots__ = ("signal", "task", "idle_since")

    def __init__(self) -> None:
        # A plain Lock used as a binary semaphore: cheaper than an Event and
        # lets each worker wait with its own timeout (its expiry).
        self.signal = threading.Lock()
        self.signal.acquire()
        self.task: Any = None
        self.idle_since = 0.0


class WorkerPool:
    """A bounded, lazily grown pool of worker threads (see the module docs)."""

    def __init__(
        self,
        capacity: int,
        expiry: float = DEFAULT_EXPIRY,
        nonblocking: bool = False,
        panic_handler: PanicHandler | None = None,
        *,
        max_blocking: int = 0,
        queue_size: int = 0,
        name: str = "protogen-pool",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"WorkerPool capacity must be >= 1, got {capacity}")
        if queue_size < 0:
            raise ValueError(f"WorkerPool queue_size must be >= 0, got {queue_size}")
        if expiry <= 0:
            raise ValueError(f"WorkerPool expiry must be > 0 seconds, got {expiry}")
        if max_blocking < 0:
            raise ValueError(
                f"WorkerPool max_blocking must be >= 0, got {max_blocking}"
            )
        self._capacity = capacity
        self._expiry = float(expiry)
        self._nonblocking = nonblocking
        self._max_blocking = max_blocking
        self._queue_size = queue_size
        self._panic_handler = panic_handler
        self._name = name
        self._reset_state()
        _live_pools.add(self)

    def _reset_state(self) -> None:
        self._lock = threading.Lock()
        # Signalled whenever a worker becomes available (idle, exited, or cap raised).
        self._available = threading.Condition(self._lock)
        # Signalled when the last worker exits (release(timeout=...)).
        self._drained = threading.Condition(self._lock)
        self._idle: list[_Worker] = []  # LIFO: top is the most recently used
        self._queue: collections.deque[Any] = collections.deque()  # FIFO tasks
        self._workers = 0
        self._waiting = 0
        self._dismissed = 0  # told to exit, not yet gone
        self._closed = False
        self._spawned = 0

    # -- introspection -------------------------------------------------------

    def cap(self) -> int:
        """The maximum number of worker threads."""
        return self._capacity

    def running(self) -> int:
        """Live worker threads, busy or idle (ants' ``Running``)."""
        return self._workers

    def free(self) -> int:
        """How many more workers could be started: ``cap() - running()``."""
        return max(0, self._capacity - self._workers)

    def idle(self) -> int:
        """Live workers currently waiting for a task."""
        return len(self._idle)

    def waiting(self) -> int:
        """Submitters currently blocked because every worker is busy."""
        return self._waiting

    def queued(self) -> int:
        """Tasks accepted but waiting for a worker (at most ``queue_size``)."""
        return len(self._queue)

    def is_closed(self) -> bool:
        return self._closed

    # -- submitting ------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a worker thread.

        While ``capacity`` workers are busy the task waits in the queue (up to
        ``queue_size`` tasks); past that, blocks for room - except that a
        nonblocking pool, or a caller on an event-loop thread, gets
        :class:`PoolOverload` at once.  Raises :class:`PoolClosed` after
        ``release``.
        """
        task = (fn, args)
        with self._lock:
            while True:
                if self._closed:
                    raise PoolClosed("submit() on a released WorkerPool")
                if self._idle:
                    worker = self._idle.pop()
                    worker.task = task
                    worker.signal.release()
                    return
                if self._workers < self._capacity:
                    self._workers += 1
                    self._spawned += 1
                    break
                if len(self._queue) < self._queue_size:
                    self._queue.append(task)
                    return
                if self._nonblocking:
                    raise PoolOverload(
                        f"all {self._capacity} workers are busy (nonblocking pool)"
                    )
                if in_event_loop_thread():
                    raise PoolOverload(
                        f"all {self._capacity} workers are busy and "
                        f"{len(self._queue)} tasks are queued (an event loop "
                        "must not wait for the pool)"
                    )
                if self._max_blocking and self._waiting >= self._max_blocking:
                    raise PoolOverload(
                        f"all {self._capacity} workers are busy and "
                        f"{self._waiting} submitters are already waiting"
                    )
                self._waiting += 1
                try:
                    self._available.wait()
                finally:
                    self._waiting -= 1
            number = self._spawned
        # Start the thread outside the lock: Thread.start() waits for the new
        # thread to signal it has started, which may take a scheduler slice.
        thread = threading.Thread(
            target=self._work, args=(task,), name=f"{self._name}-{number}", daemon=True
        )
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self._worker_exited()
            raise

    # -- the worker thread -------------------------------------------------------

    def _work(self, task: Any) -> None:
        worker = _Worker()
        while True:
            fn, args = task
            task = None  # drop references before parking
            try:
                fn(*args)
            except BaseException as exc:  # never let a task kill the worker
                self._panic(exc)
            fn = args = None
            with self._lock:
                surplus = self._workers - self._dismissed > self._capacity
                if self._queue and not surplus:  # the oldest queued task first
                    task = self._queue.popleft()
                    if self._waiting:
                        self._available.notify()
                    continue
                if self._closed or surplus:
                    self._worker_exited()
                    return
                worker.idle_since = time.monotonic()
                self._idle.append(worker)
                if self._waiting:
                    self._available.notify()
            # Woken by submit (task), tune/release (_EXIT), or our own expiry.
            if not worker.signal.acquire(timeout=self._expiry):
                with self._lock:
                    if worker in self._idle:  # nobody handed us a task: expire
                        self._idle.remove(worker)
                        self._worker_exited()
                        return
                # A submitter picked us just as the timeout fired; it has
                # released (or is about to release) the signal.
                worker.signal.acquire()
            task = worker.task
            worker.task = None
            if task is _EXIT:
                with self._lock:
                    self._dismissed -= 1
                    self._worker_exited()
                return

    def _worker_exited(self) -> None:
        """Bookkeeping for a worker thread leaving; caller holds the lock."""
        self._workers -= 1
        if self._waiting:
            self._available.notify()
        if self._workers == 0:
            self._drained.notify_all()

    def _panic(self, exc: BaseException) -> None:
        handler = self._panic_handler
        if handler is None:
            logger.error("worker pool task raised %r", exc, exc_info=exc)
            return
        try:
            handler(exc)
        except BaseException as nested:
            logger.error(
                "worker pool panic handler raised %r while handling %r",
                nested,
                exc,
                exc_info=nested,
            )

    # -- resizing and lifecycle --------------------------------------------------

    def tune(self, new_capacity: int) -> None:
        """Change the capacity.  Surplus workers exit as they become idle."""
        if new_capacity < 1:
            raise ValueError(f"WorkerPool capacity must be >= 1, got {new_capacity}")
        with self._lock:
            self._capacity = new_capacity
            # Retire the coldest idle workers first (bottom of the LIFO stack).
            while self._idle and self._workers - self._dismissed > new_capacity:
                self._dismiss(self._idle.pop(0))
            self._available.notify_all()

    def _dismiss(self, worker: _Worker) -> None:
        """Tell an idle worker (already off the stack) to exit; lock held."""
        # It is still counted in _workers until its thread wakes and leaves.
        self._dismissed += 1
        worker.task = _EXIT
        worker.signal.release()

    def release(self, timeout: float | None = None) -> bool:
        """Close the pool: idle workers exit, busy ones once the queue is empty.

        Blocked and later ``submit`` calls raise :class:`PoolClosed`.  With a
        ``timeout``, wait up to that long for every worker thread to exit and
        return whether they all did; without one, return at once (True if no
        worker is left).
        """
        with self._lock:
            self._closed = True
            while self._idle:
                self._dismiss(self._idle.pop())
            self._available.notify_all()
            if timeout is not None:
                deadline = time.monotonic() + timeout
                while self._workers:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._drained.wait(remaining)
            return self._workers == 0

    def reboot(self) -> None:
        """Reopen a released pool; workers are started again on demand."""
        with self._lock:
            self._closed = False

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<WorkerPool {state} cap={self._capacity} running={self._workers} "
            f"idle={len(self._idle)} waiting={self._waiting}>"
        )

    def _after_fork_in_child(self) -> None:
        # The parent's threads do not exist in the child; start from scratch
        # (fresh locks too: the parent may have held one while forking).
        closed = self._closed
        self._reset_state()
        self._closed = closed


_live_pools: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()

_default_pool: WorkerPool | None = None
_default_lock = threading.Lock()


def default_pool() -> WorkerPool:
    """The process-wide shared pool (created on first use).

    Capacity :data:`DEFAULT_POOL_CAPACITY` threads, :data:`DEFAULT_EXPIRY`
    seconds of idle expiry, :data:`DEFAULT_POOL_QUEUE` queued tasks; past
    that, submits block (or raise :class:`PoolOverload` on an event-loop
    thread).  Each worker process of the multi-process engine gets its own.
    """
    global _default_pool
    pool = _default_pool
    if pool is None:
        with _default_lock:
            pool = _default_pool
            if pool is None:
                pool = _default_pool = WorkerPool(
                    DEFAULT_POOL_CAPACITY,
                    DEFAULT_EXPIRY,
                    queue_size=DEFAULT_POOL_QUEUE,
                    name="protogen-default-pool",
                )
    return pool


def _reinit_after_fork() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for pool in list(_live_pools):
        pool._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
