"""Zero-downtime reload on SIGHUP: new code on the same listening sockets.

The process re-executes itself (`sys.orig_argv`: the same command line, so
the handler's code and the spec are imported and built afresh) with its
listening sockets inherited: `PROTOGEN_LISTEN_FDS` maps each listen URL to
its descriptor, and `bind_listener` adopts the descriptor instead of binding
(the kernel keeps queueing connections meanwhile: none is refused). The
process ID stays the same, as systemd's `ExecReload=kill -HUP $MAINPID`
wants.

What serves the connections that were open?

* one loop: just before the exec the process forks; the fork keeps the open
  connections (they are close-on-exec in the original) and *retires*;
* several loops: the supervisor tells each worker to retire, then re-executes
  (its workers stay alive; the new supervisor starts new ones).

Retiring (`retire`): stop accepting (close the listeners: the new process has
them), keep serving the open connections until they close or
`reload_grace` seconds pass, then drain as on shutdown (`drain_timeout`,
`on_shutdown`) and exit.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ENV_LISTEN_FDS",
    "ENV_RETIRED_PIDS",
    "inherited_fd",
    "reap",
    "reap_on",
    "reexec",
    "retire",
    "retired_pids",
]

ENV_LISTEN_FDS = "PROTOGEN_LISTEN_FDS"
ENV_RETIRED_PIDS = "PROTOGEN_RETIRED_PIDS"
RETIRE_CHECK = 0.05  # seconds between checks of a retiring loop's connections

_log = logging.getLogger("protogen.runtime.reload")
_inherited: dict[str, int] | None = None


def _load() -> dict[str, int]:
    global _inherited
    if _inherited is None:
        raw = os.environ.pop(ENV_LISTEN_FDS, "")  # not for our own children
        try:
            loaded = json.loads(raw) if raw else {}
        except ValueError:
            loaded = {}
        _inherited = {str(url): int(fd) for url, fd in loaded.items()}
    return _inherited


def inherited_fd(url: str) -> int | None:
    """The descriptor a reload passed for listen URL `url` (taken once)."""
    return _load().pop(url, None)


def retired_pids() -> list[int]:
    """Workers of the process image before the reload (to reap)."""
    raw = os.environ.pop(ENV_RETIRED_PIDS, "")
    return [int(pid) for pid in raw.split(",") if pid.isdigit()]


def reap(pids: list[int]) -> list[int]:
    """Collect retired processes that exited; the ones still running."""
    running = []
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if not done:
            running.append(pid)
    return running


def reap_on(loop: Any, pids: list[int], every: float = 0.5) -> None:
    """Reap `pids` from `loop`'s timers until they have all exited."""

    def again() -> None:
        left = reap(pids)
        if left and not loop.stopping:
            loop.call_later(every, reap_on, loop, left, every)

    if pids:
        loop.call_later(every, again)


def reexec(sockets: Iterable[tuple[str, Any]], retired: Iterable[int] = ()) -> None:
    """Execute this program again, passing `sockets` ((url, socket) pairs).

    Does not return (raises OSError if the exec fails).
    """
    passed = {}
    for url, sock in sockets:
        fd = sock.fileno()
        if fd >= 0:
            os.set_inheritable(fd, True)
            passed[url] = fd
    env = dict(os.environ)
    env[ENV_LISTEN_FDS] = json.dumps(passed)
    pids = ",".join(str(pid) for pid in retired)
    if pids:
        env[ENV_RETIRED_PIDS] = pids
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    # The signal mask and handlers are reset by exec; SIGHUP must not be
    # ignored there (inherited SIG_IGN survives exec).
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    argv = [sys.executable, *sys.orig_argv[1:]]
    _log.info("protogen: reloading: %s", " ".join(argv))
    os.execve(sys.executable, argv, env)


def retire(engine: Any, grace: float, *, handover: bool = True) -> None:
    """Loop thread: stop accepting; serve the open connections until they
    close or `grace` seconds pass; then shut down gracefully.

    `handover`: a reload (the new process has the listeners and the metrics
    endpoint); else a stop (stop_grace): connections already waiting in the
    accept queue are taken first (closing the listener would reset them) and
    /healthz answers 503 until the end.
    """
    loop = engine.loop
    engine.retiring = True
    if not handover:
        engine.accept_backlog()
    engine.release_listeners(metrics=handover)
    deadline = time.monotonic() + grace

    def check() -> None:
        if loop.stopping:
            return
        if not loop.count_connections() or time.monotonic() >= deadline:
            loop.request_stop()
            return
        loop.call_later(RETIRE_CHECK, check)

    check()
