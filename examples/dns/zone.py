"""The DNS example's zone: typed records by (name, type), loaded from a zone file.

The file format is a small subset of RFC 1035 master files, one record a line:

    NAME  [TTL]  [IN]  TYPE  DATA        ; comment

NAME is absolute (the final dot is optional) in presentation form: `\\.` is a
dot inside a label, `\\DDD` a byte. TYPE and DATA:

    A      192.0.2.1                 AAAA   2001:db8::1
    NS     ns1.example.com.          CNAME  www.example.com.
    PTR    host.example.com.         MX     10 mail.example.com.
    TXT    "one or more" "quoted strings (each up to 255 bytes)"
    SOA    MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM      (on one line)

Exactly one SOA record: its owner is the zone's origin, the only names the
server answers for. The record data are the codec's values (`bytes` for A and
AAAA, `str` names, `Mx`, `Soa`, `list[bytes]` for TXT), ready to encode.
"""

from __future__ import annotations

import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path

import dns_names
from dns_codec import Mx, RRType, Soa

__all__ = ["DEFAULT_TTL", "Key", "RData", "Zone", "key_of", "load_zone", "parse_zone"]

DEFAULT_TTL = 300
Key = tuple[bytes, ...]  # a name's wire labels, ASCII lower-cased
RData = bytes | str | Mx | Soa | list[bytes]
RRset = list[tuple[int, RData]]  # (ttl, rdata) of one name and type


def key_of(name: str) -> Key:
    """The zone's key for a presentation-form name: names compare ASCII
    case-insensitively (RFC 4343), label by label (a dot inside a label stays)."""
    return tuple(label.lower() for label in dns_names.labels(name))


def _absolute(name: str) -> str:
    """`name` without its final dot (not an escaped one: `a\\.` keeps it)."""
    body = name.removesuffix(".")
    escapes = len(body) - len(body.rstrip("\\"))
    return name if escapes % 2 else body


def _ints(values: list[str], count: int) -> list[int]:
    if len(values) != count:
        raise ValueError(f"{count} numbers expected, not {len(values)}")
    return [int(value) for value in values]


def _rdata(rtype: RRType, values: list[str]) -> RData:
    if rtype in (RRType.a, RRType.aaaa):
        if len(values) != 1:
            raise ValueError("one address expected")
        family = socket.AF_INET if rtype == RRType.a else socket.AF_INET6
        return socket.inet_pton(family, values[0])
    if rtype in (RRType.ns, RRType.cname, RRType.ptr):
        if len(values) != 1:
            raise ValueError("one name expected")
        return _name(values[0])
    if rtype == RRType.mx:
        if len(values) != 2:
            raise ValueError("a preference and a name expected")
        return Mx(int(values[0]), _name(values[1]))
    if rtype == RRType.soa:
        if len(values) < 2:
            raise ValueError("MNAME RNAME and five numbers expected")
        return Soa(_name(values[0]), _name(values[1]), *_ints(values[2:], 5))
    if rtype == RRType.txt:
        chunks = [value.encode() for value in values]
        if any(len(chunk) > 255 for chunk in chunks):
            raise ValueError("a TXT string holds at most 255 bytes")
        return chunks
    raise ValueError(f"unsupported type {rtype.name.upper()}")


def _name(text: str) -> str:
    name = _absolute(text)
    dns_names.labels(name)  # ValueError for a name no message can carry
    return name


@dataclass
class Zone:
    """Records by (key, type); the names that exist (for NXDOMAIN); the origin."""

    origin: Key = ()
    origin_name: str = ""
    soa: tuple[int, Soa] | None = None
    records: dict[tuple[Key, int], RRset] = field(default_factory=dict)
    names: set[Key] = field(default_factory=set)

    def add(
        self, name: str, rtype: RRType, rdata: RData, ttl: int = DEFAULT_TTL
    ) -> None:
        key = key_of(name)
        self.records.setdefault((key, rtype), []).append((ttl, rdata))
        # Every ancestor exists too (an empty non-terminal answers NODATA,
        # not NXDOMAIN: RFC 8020); names outside the zone are never asked.
        for start in range(len(key)):
            self.names.add(key[start:])
        if isinstance(rdata, Soa):
            if self.soa is not None:
                raise ValueError("a second SOA record")
            self.origin, self.origin_name, self.soa = key, name, (ttl, rdata)

    def contains(self, key: Key) -> bool:
        """Whether the name is the origin or below it (label by label)."""
        size = len(self.origin)
        return key[len(key) - size :] == self.origin if size else True

    def lookup(self, key: Key, rtype: int) -> RRset | None:
        """The records, [] when the name exists without that type, None when it doesn't."""
        records = self.records.get((key, rtype))
        if records is not None:
            return records
        return [] if key in self.names else None


def parse_zone(text: str) -> Zone:
    zone = Zone()
    for number, line in enumerate(text.splitlines(), 1):
        lexer = shlex.shlex(line, posix=True)
        lexer.whitespace_split = True
        lexer.commenters = ";"  # outside quotes only
        lexer.escape = ""  # backslashes are the names' escapes, kept for dns_names
        tokens = list(lexer)
        if not tokens:
            continue
        try:
            name, rest = _absolute(tokens[0]), tokens[1:]
            ttl = DEFAULT_TTL
            if rest and rest[0].isdigit():
                ttl, rest = int(rest[0]), rest[1:]
            if rest and rest[0].upper() == "IN":
                rest = rest[1:]
            if not rest:
                raise ValueError("no record type")
            try:
                rtype = RRType[rest[0].lower()]
            except KeyError:
                raise ValueError(f"unsupported type {rest[0]!r}") from None
            zone.add(name, rtype, _rdata(rtype, rest[1:]), ttl)
        except (ValueError, OSError) as exc:
            raise ValueError(f"zone line {number}: {exc}: {line!r}") from None
    if zone.soa is None:
        raise ValueError("the zone has no SOA record (its owner is the zone's origin)")
    outside = sorted(key for key, _ in zone.records if not zone.contains(key))
    if outside:
        raise ValueError(f"{dns_names.text(list(outside[0]))!r} is outside the zone")
    return zone


def load_zone(path: str | Path) -> Zone:
    return parse_zone(Path(path).read_text())
