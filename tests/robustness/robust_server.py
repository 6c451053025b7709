"""A generated server in a subprocess that reports what happens to its connections.

    python robust_server.py CONFIG.json

CONFIG: {"gen_dir", "protocol", "urls", "options", "events", "log", "behaviour"}.
The generated `Echo<Protocol>Handler` is wrapped by `Reporting`, which appends one
JSON line per event to `events` (open, close with the error's type, frame counts,
write pauses) so tests can see the server's side of every connection. Tests tell
connections apart by the client's port (`peer`). `behaviour` makes callbacks raise
on purpose (handler-exception tests). Runtime logs (with tracebacks) go to `log`.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
from typing import Any


def peer_of(conn: Any) -> Any:
    addr = conn.remote_addr
    if isinstance(addr, tuple) and len(addr) >= 2:
        return addr[1]
    return repr(addr)


def local_port(conn: Any) -> Any:
    addr = conn.local_addr
    if isinstance(addr, tuple) and len(addr) >= 2:
        return addr[1]
    return None


def make_handler(base: type, events_path: str, behaviour: dict[str, Any]) -> Any:
    events = open(events_path, "a", buffering=1, encoding="utf-8")

    def emit(**fields: Any) -> None:
        fields["t"] = time.monotonic()
        events.write(json.dumps(fields) + "\n")

    # The echo handler overrides exactly one method: the per-frame callback.
    frame_callback = next(name for name in vars(base) if name.startswith("on_"))
    base_frame = getattr(base, frame_callback)
    raise_open_unix = behaviour.get("raise_in_open_on_unix", False)
    poison = behaviour.get("poison", {})  # payload -> where to raise

    class Reporting(base):  # type: ignore[misc, valid-type]
        def on_boot(self, engine: Any) -> Any:
            emit(event="boot", urls=engine.urls, pid=os.getpid())
            return super().on_boot(engine)

        def on_open(self, conn: Any) -> Any:
            conn.context = {"frames": 0, "close_raise": False}
            emit(event="open", peer=peer_of(conn))
            if raise_open_unix and local_port(conn) is None:
                raise RuntimeError("on_open exploded on purpose")
            return super().on_open(conn)

        def on_close(self, conn: Any, err: BaseException | None) -> Any:
            context = conn.context or {}
            emit(
                event="close",
                peer=peer_of(conn),
                err=None if err is None else type(err).__name__,
                message=None if err is None else str(err),
                frames=context.get("frames", 0),
            )
            result = super().on_close(conn, err)
            if context.get("close_raise"):
                raise RuntimeError("on_close exploded on purpose")
            return result

        def on_write_pause(self, conn: Any, paused: bool) -> None:
            emit(event="pause" if paused else "resume", peer=peer_of(conn))

        def on_tick(self) -> Any:
            emit(event="tick")
            if behaviour.get("raise_in_tick"):
                raise RuntimeError("on_tick exploded on purpose")
            return 0.2, None

        def on_shutdown(self, engine: Any) -> None:
            emit(event="shutdown")

    def on_frame(self: Any, conn: Any, frame: Any) -> Any:
        conn.context["frames"] += 1
        payload = bytes(getattr(frame, behaviour.get("payload_field", "payload"), b""))
        where = poison.get(payload.decode("latin-1"))
        if where == "traffic":
            raise RuntimeError("on_traffic exploded on purpose")
        if where == "close":
            conn.context["close_raise"] = True
        return base_frame(self, conn, frame)

    setattr(Reporting, frame_callback, on_frame)
    return Reporting


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as file:
        config = json.load(file)
    logging.basicConfig(
        filename=config["log"],
        level=logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    sys.path.insert(0, config["gen_dir"])
    protocol = config["protocol"]
    handler_module = importlib.import_module(f"{protocol}_handler")
    camel = "".join(part.capitalize() for part in protocol.split("_"))
    base = getattr(handler_module, f"Echo{camel}Handler")
    handler_class = make_handler(base, config["events"], config.get("behaviour", {}))
    server = importlib.import_module(f"{protocol}_server")
    options = dict(config.get("options", {}))
    if "unix_mode" in options:
        options["unix_mode"] = int(options["unix_mode"], 8)
    server.serve(handler_class(), *config["urls"], **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
