"""The syslog example: a collector of syslog messages over TCP (RFC 6587).

`syslog.proto.dsl` has one phase that takes both framings at once, chosen by
each message's first byte: octet-counted (`100 <13>1 ...`, what
`logger --octet-count` sends) and newline-ended (`<13>1 ...\\n`). Each message
is written as one line, `FACILITY.SEVERITY MESSAGE` (`local3.warning <156>1
2026-...`), to the output (stdout, or `serve.py --output FILE`); a message
without a valid PRI as `-.- MESSAGE`. A frame that breaks the framing (a count
over 64 KiB, a line over 8 KiB) closes only that connection.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

from syslog_codec import Counted, Line
from syslog_handler import SyslogHandler

from protogen.runtime import Action, Conn

__all__ = ["SyslogExample", "describe"]

FACILITIES = (
    "kern user mail daemon auth syslog lpr news uucp cron authpriv ftp ntp audit"
    " alert clock local0 local1 local2 local3 local4 local5 local6 local7"
).split()
SEVERITIES = "emerg alert crit err warning notice info debug".split()
# RFC 5424 section 6.2.1: "<" 1-3 digits ">", no leading zero but "<0>"
_PRI = re.compile(rb"<(0|[1-9][0-9]{0,2})>")


def describe(message: bytes) -> str:
    """`facility.severity message`, the message decoded leniently."""
    match = _PRI.match(message)
    value = int(match.group(1)) if match else 192
    # One line per message: a line feed inside (octet counting allows it) is shown `\n`.
    text = (
        message.rstrip(b"\r").decode("utf-8", "backslashreplace").replace("\n", "\\n")
    )
    if value > 191:
        return f"-.- {text}"
    return f"{FACILITIES[value >> 3]}.{SEVERITIES[value & 7]} {text}"


class SyslogExample(SyslogHandler):
    """Writes every message it receives to `output`, one line each."""

    def __init__(self, output: TextIO | None = None) -> None:
        super().__init__()
        self.output = output or sys.stdout
        self.count = 0

    def on_counted(self, conn: Conn, frame: Counted) -> Action | None:
        return self._collect(bytes(frame.message))

    def on_line(self, conn: Conn, frame: Line) -> Action | None:
        return self._collect(bytes(frame.message))

    def _collect(self, message: bytes) -> None:
        self.count += 1
        self.output.write(describe(message) + "\n")
        self.output.flush()
