"""Stop (SIGTERM) a generated server while clients stream frames at it: every
frame the server decoded gets its response before the connection closes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import robust_specs as specs
from robust_harness import connect, port_of, serving, wait_for

CONNECTIONS = 4
BATCH = 50  # frames per sendall


def test_stop_during_a_stream_answers_every_frame_read(
    built: Callable[[str], tuple[Path, str, ModuleType]], tmp_path: Path
) -> None:
    directory, protocol, codec = built(specs.ECHO)
    with serving(directory, protocol, tmp_path / "work") as served:
        socks = [connect(served.url, timeout=10) for _ in range(CONNECTIONS)]
        received: list[list[bytes]] = [[] for _ in socks]
        sent_frames = [0] * CONNECTIONS
        ended: list[str | None] = [None] * CONNECTIONS

        def send(i: int) -> None:
            n = 0
            try:
                while True:
                    batch = [
                        codec.Message(payload=b"%d:%d" % (i, k)).encode()
                        for k in range(n, n + BATCH)
                    ]
                    socks[i].sendall(b"".join(batch))
                    n += BATCH
                    sent_frames[i] = n
            except OSError:  # the server closed: EPIPE / reset / timeout
                pass

        def receive(i: int) -> None:
            reader = codec.MessageReader()
            try:
                while True:
                    # Slower than the server answers: at the stop, answers are
                    # still queued in the kernel's send buffer (they must arrive).
                    data = socks[i].recv(4096)
                    time.sleep(0.002)
                    if not data:
                        ended[i] = "eof"
                        return
                    received[i].extend(bytes(f.payload) for f in reader.feed(data))
            except OSError as exc:
                ended[i] = type(exc).__name__

        threads = [
            threading.Thread(target=fn, args=(i,), daemon=True)
            for i in range(CONNECTIONS)
            for fn in (send, receive)
        ]
        for thread in threads:
            thread.start()
        # Let the streams run until every connection has had answers.
        assert wait_for(lambda: all(len(r) > 200 for r in received), 20)
        time.sleep(0.3)
        assert served.stop() == 0, served.stderr()
        for thread in threads:
            thread.join(15)
            assert not thread.is_alive()
        try:
            for i, sock in enumerate(socks):
                closed = served.close_of(port_of(sock), timeout=1)
                assert closed["err"] is None, closed
                decoded = closed["frames"]
                assert 0 < decoded <= sent_frames[i] + BATCH
                # Every frame the server decoded was answered, in order, before the close.
                assert received[i] == [b"%d:%d" % (i, k) for k in range(decoded)], (
                    f"conn {i}: {len(received[i])} answers for {decoded} decoded frames, "
                    f"ended by {ended[i]}"
                )
        finally:
            for sock in socks:
                sock.close()
        assert served.find("shutdown")
