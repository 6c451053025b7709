"""Engine lifecycle: options, boot/tick/shutdown, stop from another thread, signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from core_harness import (
    connect,
    frame,
    recv_frame,
    serving,
    wait_for,
    is_closed_by_peer,
)
from protogen.runtime import Action, AddressError, Engine, EventHandler, Options, run

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_option_is_an_error_naming_it() -> None:
    with pytest.raises(TypeError, match="tcp_nodelay"):
        run(EventHandler(), "tcp://127.0.0.1:0", tcp_nodelay=True)


@pytest.mark.parametrize(
    "options, name",
    [
        ({"max_buffered_per_conn": 0}, "max_buffered_per_conn"),
        ({"write_low_water": 10, "write_high_water": 5}, "write_low_water"),
        ({"load_balancing": "random"}, "load_balancing"),
        ({"idle_timeout": -1}, "idle_timeout"),
        ({"poller": "io_uring"}, "poller"),
        ({"ticker": "yes"}, "ticker"),
    ],
)
def test_bad_option_values_name_the_option(options: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Options.from_kwargs(**options)


def test_documented_defaults() -> None:
    options = Options()
    assert options.tcp_no_delay is True
    assert options.loops == 1 and options.multicore is False
    assert options.load_balancing == "round_robin"
    assert options.edge_triggered is None and options.ticker is False  # None: auto
    assert (
        options.write_low_water <= options.write_high_water <= options.write_buffer_cap
    )


def test_malformed_address_is_rejected_naming_it() -> None:
    with pytest.raises(AddressError, match="tcp://127.0.0.1:notaport"):
        run(EventHandler(), "tcp://127.0.0.1:notaport")


def test_boot_shutdown_order_and_stop_from_another_thread() -> None:
    events: list = []

    class Lifecycle(EventHandler):
        def on_boot(self, engine):
            events.append(("boot", type(engine).__name__, len(engine.urls)))
            return Action.NONE

        def on_open(self, conn):
            events.append("open")
            return None, Action.NONE

        def on_close(self, conn, err):
            events.append(("close", err))
            return Action.NONE

        def on_shutdown(self, engine):
            events.append(("shutdown", engine.count_connections()))

    engine = Engine(
        Lifecycle(), ["tcp://127.0.0.1:0"], Options(install_signal_handlers=False)
    )
    thread = threading.Thread(target=engine.run)
    thread.start()
    assert engine.wait_started(10)
    sock = connect(engine.urls[0])
    assert wait_for(lambda: engine.count_connections() == 1)
    threading.Thread(target=engine.stop).start()  # stop() from yet another thread
    thread.join(10)
    assert not thread.is_alive()
    assert is_closed_by_peer(sock)
    sock.close()
    assert events == [("boot", "Engine", 1), "open", ("close", None), ("shutdown", 0)]
    stats = engine.stats()
    assert stats.connections_opened == stats.connections_closed == 1


def test_on_tick_cadence_and_shutdown_action() -> None:
    ticks: list[float] = []

    class Ticker(EventHandler):
        def on_tick(self):
            ticks.append(time.monotonic())
            return 0.05, (Action.SHUTDOWN if len(ticks) == 8 else Action.NONE)

    start = time.monotonic()
    with serving(Ticker(), "tcp://127.0.0.1:0", ticker=True) as engine:
        assert engine.stopped.wait(
            10
        ), "Action.SHUTDOWN from on_tick did not stop the engine"
    assert len(ticks) == 8
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert all(gap >= 0.045 for gap in gaps), gaps  # never early
    assert sum(gaps) / len(gaps) < 0.5, gaps  # tolerant: a loaded machine is slow
    assert ticks[0] - start < 5


def test_on_boot_shutdown_stops_at_once() -> None:
    class No(EventHandler):
        def on_boot(self, engine):
            return Action.SHUTDOWN

    done = threading.Event()
    thread = threading.Thread(
        target=lambda: (
            run(No(), "tcp://127.0.0.1:0", install_signal_handlers=False),
            done.set(),
        )
    )
    thread.start()
    assert done.wait(10)


def test_fatal_handler_errors_option_stops_and_raises() -> None:
    class Boom(EventHandler):
        def on_traffic(self, conn):
            raise RuntimeError("kaboom")

    engine = Engine(
        Boom(),
        ["tcp://127.0.0.1:0"],
        Options(fatal_handler_errors=True, install_signal_handlers=False),
    )
    errors: list = []

    def target() -> None:
        try:
            engine.run()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    assert engine.wait_started(10)
    with connect(engine.urls[0]) as sock:
        sock.sendall(b"x")
        thread.join(10)
    assert not thread.is_alive()
    assert str(errors[0]) == "kaboom"


SERVER = """
import sys
sys.path.insert(0, {examples!r})
from runtime_echo import LengthPrefixedEcho
from protogen.runtime import run

class Announce(LengthPrefixedEcho):
    def on_boot(self, engine):
        print(" ".join(engine.urls), flush=True)
        return super().on_boot(engine)

    def on_shutdown(self, engine):
        print("shutdown", flush=True)

run(Announce(), "tcp://127.0.0.1:0", {unix!r})
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_gracefully_and_exits_0(tmp_path, signum) -> None:
    path = tmp_path / "sig.sock"
    code = SERVER.format(examples=str(ROOT / "examples"), unix=f"unix://{path}")
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    try:
        urls = proc.stdout.readline().split()
        assert len(urls) == 2 and path.exists()
        with connect(urls[0]) as sock:
            sock.sendall(frame(b"before signal"))
            assert recv_frame(sock) == b"before signal"
            proc.send_signal(signum)
            assert is_closed_by_peer(sock)
        assert proc.wait(10) == 0
        assert proc.stdout.read().strip() == "shutdown"
        assert not path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_run_delegates_to_multicore_when_loops_gt_1(monkeypatch) -> None:
    import protogen.runtime.multicore as multicore

    calls: list = []
    monkeypatch.setattr(
        multicore,
        "run_multicore",
        lambda h, addrs, opts: calls.append((h, addrs, opts)),
    )
    handler = EventHandler()
    run(handler, "tcp://127.0.0.1:0", loops=3, load_balancing="least_connections")
    run(handler, "tcp://127.0.0.1:0", multicore=True)
    assert [c[2].loops for c in calls] == [3, 1]
    assert calls[0][0] is handler and calls[0][1][0].port == 0
    assert calls[0][2].load_balancing == "least_connections" and calls[1][2].multicore


def test_serve_announces_from_the_loop_thread_before_serving() -> None:
    # The CLI's "serving" line: a helper thread printing it could lose the race
    # to the first connection or to a quick stop (then it printed nothing).
    from protogen.runtime.cli import serve as cli_serve

    events: list[tuple[str, int]] = []
    announced: list[str] = []
    engines: list[Any] = []

    class Recorder(EventHandler):
        def on_boot(self, engine: Any) -> None:
            engines.append(engine)
            events.append(("boot", threading.get_ident()))

        def on_open(self, conn: Any) -> None:
            events.append(("open", threading.get_ident()))

    def announce(urls: list[str]) -> None:
        events.append(("announce", threading.get_ident()))
        announced.extend(urls)

    thread = threading.Thread(
        target=cli_serve,
        args=(Recorder(), ["tcp://127.0.0.1:0"], {"install_signal_handlers": False}),
        kwargs={"announce": announce},
        daemon=True,
    )
    thread.start()
    try:
        assert wait_for(lambda: bool(announced)), "nothing announced"
        with connect(announced[0]):
            assert wait_for(lambda: len(events) == 3)
    finally:
        assert wait_for(lambda: bool(engines))
        engines[0].stop()
        thread.join(10)
    assert not thread.is_alive()
    (boot, boot_thread), (first, first_thread), (last, last_thread) = events
    assert (boot, first, last) == ("boot", "announce", "open")
    assert boot_thread == first_thread == last_thread


def test_serve_announces_nothing_when_on_boot_shuts_down() -> None:
    from protogen.runtime.cli import serve as cli_serve

    announced: list[list[str]] = []

    class Quits(EventHandler):
        def on_boot(self, engine: Any) -> Action:
            return Action.SHUTDOWN

    cli_serve(
        Quits(),
        ["tcp://127.0.0.1:0"],
        {"install_signal_handlers": False},
        announce=announced.append,
    )
    assert announced == []
