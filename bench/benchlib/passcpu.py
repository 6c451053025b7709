"""Run a protogen server with each event-loop pass timed in CPU time.

    python bench/benchlib/passcpu.py LOG -m protogen serve ...
    python bench/benchlib/passcpu.py LOG examples/http/serve.py --listen ...

A pass is what the loop does between two polls: the events, owed work, timers.
Its thread CPU time (user and system, CLOCK_THREAD_CPUTIME_ID) is what the
server itself spent, whatever else ran on the machine, so a bystander's
wall-clock latency can be told apart from a loop that really stalls. Every pass
of at least THRESHOLD seconds is appended to LOG as `wall_time cpu_seconds
events`; `worst_pass(LOG, start, end)` reads the heaviest one of a time window.
Workers forked by --loops inherit the wrapper and append to the same LOG.
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from typing import Any

THRESHOLD = 0.001  # seconds of CPU: lighter passes are not logged


def instrument(log_path: str) -> None:
    """Make every EventLoop log its passes to `log_path`."""
    # The timing wraps EventLoop.run, which a compiled runtime's extension type
    # does not allow: measure the pure runtime (the attacks test behaviour, not
    # speed).
    os.environ["PROTOGEN_COMPILED"] = "0"
    from protogen.runtime import eventloop

    run = eventloop.EventLoop.run

    def timed_run(loop: Any) -> None:
        poll = loop._poller.poll_raw  # run() picks poll_raw up once, at its start
        thread_time = time.thread_time
        log = open(log_path, "a", buffering=1)  # one line per write: no mixing
        started = [0.0, 0]

        def poll_raw(timeout: float | None) -> Any:
            if started[0]:
                cpu = thread_time() - started[0]
                if cpu >= THRESHOLD:
                    log.write(f"{time.time():.6f} {cpu:.6f} {started[1]}\n")
            events = poll(timeout)
            started[0] = thread_time()
            started[1] = len(events)
            return events

        loop._poller.poll_raw = poll_raw
        try:
            run(loop)
        finally:
            log.close()

    eventloop.EventLoop.run = timed_run  # type: ignore[method-assign]


def worst_pass(log_path: str, start: float, end: float) -> tuple[float, int]:
    """The heaviest logged pass (CPU seconds, events) that ended in [start, end]."""
    worst = (0.0, 0)
    try:
        with open(log_path) as log:
            for line in log:
                fields = line.split()
                if len(fields) != 3:
                    continue  # a line being written
                at, cpu = float(fields[0]), float(fields[1])
                if start <= at <= end and cpu > worst[0]:
                    worst = (cpu, int(fields[2]))
    except OSError:
        pass
    return worst


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    log_path, target = argv[0], argv[1:]
    instrument(log_path)
    # sys.path[0] is this file's directory: put back what python would have.
    if target[0] == "-m":
        sys.path[0] = os.getcwd()
        sys.argv = [target[1], *target[2:]]
        runpy.run_module(target[1], run_name="__main__", alter_sys=True)
    else:
        sys.path[0] = os.path.dirname(os.path.abspath(target[0]))
        sys.argv = target
        runpy.run_path(target[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
