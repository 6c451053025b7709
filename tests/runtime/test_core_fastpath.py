"""The loop's read fast path: the batch of small replies.

Each test enrolls several socketpairs into one EventLoop and writes every request
before the loop runs, so one poll reports all of them: the replies of one batch
are queued while later reads reuse the loop's shared buffer, then sent together.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from protogen.runtime import EventHandler, Options
from protogen.runtime.eventloop import EventLoop

from core_harness import TIMEOUT, frame, recv_exact


def run_batch(handler: Any, requests: list[bytes], wrap=None):
    """One loop in a thread, one socketpair per request, all written before run().

    Returns (client sockets, loop, thread). The handler stops the loop with
    `handler.loop.request_stop()`; `wrap` may wrap each server-side socket.
    """
    loop = EventLoop(handler, Options(install_signal_handlers=False))
    handler.loop = loop
    clients = []
    for request in requests:
        server_end, client_end = socket.socketpair()
        client_end.settimeout(TIMEOUT)
        client_end.sendall(request)
        clients.append(client_end)
        loop.enroll(wrap(server_end) if wrap else server_end, ("pair", len(clients)))
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    return clients, loop, thread


def finish(loop: EventLoop, thread: threading.Thread, clients: list) -> None:
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "loop did not stop"
    loop.close()
    for client in clients:
        client.close()


class DataEcho(EventHandler):
    """Echoes whole 4-byte-length frames with one zero-copy write; records each read."""

    def __init__(self, expected_reads: int) -> None:
        self.expected = expected_reads
        self.traffic_calls: list[bytes] = []
        self.closed: list[BaseException | None] = []

    def _whole(self, data: memoryview) -> int:
        pos = 0
        while len(data) - pos >= 4:
            end = pos + 4 + int.from_bytes(data[pos : pos + 4], "big")
            if end > len(data):
                break
            pos = end
        return pos

    def _count(self) -> None:
        if len(self.traffic_calls) >= self.expected:
            self.loop.request_stop()

    def on_traffic(self, conn: Any) -> None:
        data = conn.peek()
        self.traffic_calls.append(bytes(data))
        pos = self._whole(data)
        if pos:
            conn.write(conn.next(pos))
        self._count()

    def on_close(self, conn: Any, err: BaseException | None) -> None:
        self.closed.append(err)


def test_replies_of_one_batch_survive_the_reuse_of_the_read_buffer() -> None:
    # Same sizes, different bytes: a reply still viewing the shared read buffer
    # when the next connection's read lands would come back as that request.
    requests = [frame(bytes([65 + i]) * 50) for i in range(20)]
    handler = DataEcho(expected_reads=len(requests))
    clients, loop, thread = run_batch(handler, requests)
    replies = [recv_exact(client, len(req)) for client, req in zip(clients, requests)]
    finish(loop, thread, clients)
    assert replies == requests
    assert sorted(handler.traffic_calls) == sorted(requests)


def test_a_partial_frame_is_kept_for_the_next_read() -> None:
    whole = frame(b"first")
    partial = frame(b"second")
    handler = DataEcho(expected_reads=2)
    clients, loop, thread = run_batch(handler, [whole + partial[:5]])
    assert recv_exact(clients[0], len(whole)) == whole
    clients[0].sendall(partial[5:])  # completes the kept frame
    assert recv_exact(clients[0], len(partial)) == partial
    finish(loop, thread, clients)
    assert handler.traffic_calls == [whole + partial[:5], partial]


class ShortSends:
    """A socket whose first send takes only 3 bytes (the kernel's buffer was full)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.short = True

    def send(self, data: Any, *flags: int) -> int:
        if self.short:
            self.short = False
            return self._sock.send(memoryview(data)[:3], *flags)
        return self._sock.send(data, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_a_partly_sent_batched_reply_is_finished_later() -> None:
    requests = [frame(bytes([97 + i]) * 40) for i in range(5)]
    handler = DataEcho(expected_reads=len(requests))
    clients, loop, thread = run_batch(handler, requests, wrap=ShortSends)
    replies = [recv_exact(client, len(req)) for client, req in zip(clients, requests)]
    finish(loop, thread, clients)
    assert replies == requests
    assert handler.closed == [None] * len(requests)


class FailingSend(ShortSends):
    def send(self, data: Any, *flags: int) -> int:
        raise ConnectionResetError("peer reset")


def test_a_send_error_in_the_batch_closes_only_that_connection() -> None:
    requests = [frame(b"x" * 10), frame(b"y" * 10), frame(b"z" * 10)]
    handler = DataEcho(expected_reads=len(requests))
    wrapped: list[Any] = []

    def wrap(sock: socket.socket) -> Any:
        wrapped.append(FailingSend(sock) if len(wrapped) == 1 else sock)
        return wrapped[-1]

    clients, loop, thread = run_batch(handler, requests, wrap=wrap)
    assert recv_exact(clients[0], len(requests[0])) == requests[0]
    assert recv_exact(clients[2], len(requests[2])) == requests[2]
    assert clients[1].recv(100) == b""  # aborted, nothing sent
    finish(loop, thread, clients)
    assert sum(isinstance(err, ConnectionResetError) for err in handler.closed) == 1


class Relay(DataEcho):
    """Echoes; the third connection read also forwards its bytes to the first."""

    def __init__(self, expected_reads: int) -> None:
        super().__init__(expected_reads)
        self.conns: list[Any] = []

    def on_traffic(self, conn: Any) -> None:
        self.conns.append(conn)
        data = conn.peek()
        super().on_traffic(conn)
        if len(self.conns) == 3:
            # A view of the shared read buffer, which the next reads reuse
            # before the batch is sent.
            self.conns[0].write(data)


def test_a_view_written_to_a_batched_connection_is_copied_in_order() -> None:
    requests = [frame(bytes([48 + i]) * 30) for i in range(6)]
    handler = Relay(expected_reads=len(requests))
    clients, loop, thread = run_batch(handler, requests)
    for client, request in zip(clients, requests):
        assert recv_exact(client, len(request)) == request  # its own echo first
    first = handler.conns[0].remote_addr[1] - 1
    third = handler.conns[2].remote_addr[1] - 1
    assert recv_exact(clients[first], len(requests[third])) == requests[third]
    finish(loop, thread, clients)


@pytest.mark.parametrize(("size", "count"), [(100, 8), (5000, 8), (20, 300)])
def test_small_and_large_replies_of_one_batch_arrive_whole(
    size: int, count: int
) -> None:
    # 100 B replies are batched; 5000 B ones are over the batch limit, sent at
    # once; 300 replies fill a batch (BATCH_MAX_REPLIES), sent mid-poll.
    requests = [frame(i.to_bytes(2, "big") * size) for i in range(count)]
    handler = DataEcho(expected_reads=len(requests))
    clients, loop, thread = run_batch(handler, requests)
    replies = [recv_exact(client, len(req)) for client, req in zip(clients, requests)]
    finish(loop, thread, clients)
    assert replies == requests
