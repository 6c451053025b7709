"""A key-value store on the `netstring` protocol (`netstring.proto.dsl`).

    protogen serve examples/netstring.proto.dsl --handler examples.netstring_kv:KeyValueStore

Each request is one netstring holding a command; each gets one netstring back.
Netstrings carry their length, so values are binary-safe (spaces, commas,
newlines, NUL bytes):

    SET key value     ->  +OK
    GET key           ->  +value          or  -not found
    DEL key           ->  +1 / +0         (whether the key existed)
    KEYS              ->  +key1 key2 ...  (sorted)
    UPPER text        ->  +TEXT           (the echo-upper service)

`+` starts an answer, `-` an error (unknown command, missing argument, key too
long). Keys are 1-250 bytes without spaces. A malformed netstring or one over
the spec's 64 KiB `max_frame` closes that connection only. With `--loops N`
each worker process has its own store.
"""

from __future__ import annotations

from typing import Any, Callable

from netstring_codec import Netstring
from netstring_handler import NetstringHandler

__all__ = ["KeyValueStore", "MAX_KEY"]

MAX_KEY = 250


class KeyValueStore(NetstringHandler):
    """SET / GET / DEL / KEYS / UPPER, one netstring per request and per answer."""

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[bytes, bytes] = {}
        self._commands: dict[bytes, Callable[[bytes], bytes]] = {
            b"SET": self._set,
            b"GET": self._get,
            b"DEL": self._delete,
            b"KEYS": self._keys,
            b"UPPER": self._upper,
        }

    def on_netstring(self, conn: Any, frame: Netstring) -> None:
        command, _, argument = bytes(frame.data).partition(b" ")
        run = self._commands.get(command.upper())
        if run is None:
            answer = b"-unknown command " + command[:32]
        else:
            try:
                answer = run(argument)
            except ValueError as error:
                answer = b"-" + str(error).encode()
        self.send(conn, Netstring(data=answer))

    # -- commands: argument bytes -> answer bytes -----------------------------------

    def _set(self, argument: bytes) -> bytes:
        key, sep, value = argument.partition(b" ")
        if not sep:
            raise ValueError("usage: SET key value")
        self.store[_checked(key)] = value
        return b"+OK"

    def _get(self, argument: bytes) -> bytes:
        value = self.store.get(_checked(argument))
        return b"-not found" if value is None else b"+" + value

    def _delete(self, argument: bytes) -> bytes:
        return b"+1" if self.store.pop(_checked(argument), None) is not None else b"+0"

    def _keys(self, argument: bytes) -> bytes:
        return b"+" + b" ".join(sorted(self.store))

    def _upper(self, argument: bytes) -> bytes:
        return b"+" + argument.upper()


def _checked(key: bytes) -> bytes:
    if not key or len(key) > MAX_KEY or b" " in key:
        raise ValueError(f"a key is 1-{MAX_KEY} bytes without spaces")
    return key
