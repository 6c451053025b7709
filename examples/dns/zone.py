"""The DNS example's zone: records by (lower-cased name, type), loaded from a zone file.

The file format is a small subset of RFC 1035 master files, one record a line:

    NAME  [TTL]  TYPE  DATA        ; comment

NAME is absolute (a trailing dot is optional), TYPE is A, AAAA or TXT, and TXT
DATA is one or more double-quoted strings (each up to 255 bytes on the wire).
"""

from __future__ import annotations

import shlex
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TYPES", "Zone", "load_zone", "parse_zone", "DEFAULT_TTL"]

DEFAULT_TTL = 300
TYPES = {"A": 1, "AAAA": 28, "TXT": 16}


def _rdata(rtype: str, values: list[str]) -> bytes:
    if rtype == "A":
        return socket.inet_pton(socket.AF_INET, values[0])
    if rtype == "AAAA":
        return socket.inet_pton(socket.AF_INET6, values[0])
    chunks = [value.encode() for value in values]
    if any(len(chunk) > 255 for chunk in chunks):
        raise ValueError("a TXT string holds at most 255 bytes")
    return b"".join(bytes((len(chunk),)) + chunk for chunk in chunks)


def normalize(name: str) -> str:
    """The zone's key for a name: lower case, no trailing dot ('' is the root)."""
    return name.rstrip(".").lower()


@dataclass
class Zone:
    """(name, type code) -> [(ttl, rdata)]; names present at all, for NXDOMAIN."""

    records: dict[tuple[str, int], list[tuple[int, bytes]]] = field(
        default_factory=dict
    )
    names: set[str] = field(default_factory=set)

    def add(
        self, name: str, rtype: str, values: list[str], ttl: int = DEFAULT_TTL
    ) -> None:
        key = normalize(name)
        self.records.setdefault((key, TYPES[rtype]), []).append(
            (ttl, _rdata(rtype, values))
        )
        self.names.add(key)

    def lookup(self, name: str, rtype: int) -> list[tuple[int, bytes]] | None:
        """The records, [] when the name exists without that type, None when it doesn't."""
        records = self.records.get((name, rtype))
        if records is not None:
            return records
        return [] if name in self.names else None


def parse_zone(text: str) -> Zone:
    zone = Zone()
    for number, line in enumerate(text.splitlines(), 1):
        lexer = shlex.shlex(line, posix=True)
        lexer.whitespace_split = True
        lexer.commenters = ";"  # outside quotes only
        tokens = list(lexer)
        if not tokens:
            continue
        try:
            name, rest = tokens[0], tokens[1:]
            ttl = DEFAULT_TTL
            if rest and rest[0].isdigit():
                ttl, rest = int(rest[0]), rest[1:]
            if rest and rest[0].upper() == "IN":
                rest = rest[1:]
            rtype, values = rest[0].upper(), rest[1:]
            if rtype not in TYPES or not values:
                raise ValueError(f"unsupported record {' '.join(rest)!r}")
            zone.add(name, rtype, values, ttl)
        except (ValueError, IndexError, OSError) as exc:
            raise ValueError(f"zone line {number}: {exc}: {line!r}") from None
    return zone


def load_zone(path: str | Path) -> Zone:
    return parse_zone(Path(path).read_text())


# An RR's fixed part after its name: type, class, ttl, rdata length.
RR_FIXED = struct.Struct(">HHIH")
