"""DNS domain names with compression pointers: a protogen plug-in field type.

`extern DomainName: str = "dns_names:domain_name"` in a spec makes the generated
codec call `domain_name.decode` / `.encode` for every DomainName field, and the
generated property tests draw names from `domain_name.strategy()`. Both calls
get a `state` dict of their own per frame: decoding remembers the names at each
offset (a pointer to one is a lookup), encoding the offsets of the suffixes
written (to point at them).

Values are names in presentation form (RFC 1035 section 5.1) without the final
dot: "www.example.com", "" for the root. A label byte that is a dot, a
backslash or not printable ASCII is written as an escape (`\\.`, `\\\\`, `\\DDD`),
so every wire name has exactly one text form. `labels(name)` and
`text(labels)` convert between the two forms (the zone uses them for its keys).

Decoding follows compression pointers (RFC 1035 section 4.1.4) that point
strictly backwards, so pointer loops are impossible, and never reads outside
[origin, end). Encoding compresses: every name suffix already written in the
same message becomes a pointer (the per-message `state` remembers their
offsets). Suffixes match case-sensitively, so a decoded name is exactly the
name that was encoded.
"""

from __future__ import annotations

import re
from typing import Any

from protogen.errors import MalformedFrame

Buffer = bytes | bytearray | memoryview

MAX_NAME = 255  # wire bytes, RFC 1035 section 2.3.4
MAX_LABEL = 63
_POINTER_LIMIT = 0x4000  # offsets a 14-bit pointer can hold
# Label bytes that print as themselves; anything else is escaped.
_PLAIN_LABEL = re.compile(rb"[A-Za-z0-9_*-]*")
_PLAIN_NAME = re.compile(rb"[A-Za-z0-9_*.-]*")
_STATE_KEY = "dns_names"


def text(labels: list[bytes]) -> str:
    """The presentation form of wire labels (the inverse of `labels`)."""
    return ".".join(_label_text(label) for label in labels)


def labels(value: str) -> list[bytes]:
    """The wire labels of a presentation-form name (no final dot).

    ValueError for a name no message can carry (an empty or too long label, a
    name over 255 bytes, a bad escape).
    """
    return _labels(value)


def _label_text(label: bytes) -> str:
    if _PLAIN_LABEL.fullmatch(label):
        return label.decode("ascii")
    out = []
    for byte in label:
        if byte in b".\\":
            out.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def _labels(value: str) -> list[bytes]:
    """Wire labels of a presentation-form name; ValueError for impossible names."""
    if not value:
        return []
    if "\\" not in value:
        try:
            labels = [label.encode("ascii") for label in value.split(".")]
        except UnicodeEncodeError:
            raise ValueError(
                f"DNS name {value!r} is not ASCII (escape bytes as \\DDD)"
            ) from None
    else:
        labels = _escaped_labels(value)
    for label in labels:
        if not 1 <= len(label) <= MAX_LABEL:
            raise ValueError(
                f"DNS name {value!r}: labels are 1 to {MAX_LABEL} bytes, not {len(label)}"
            )
    if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME:
        raise ValueError(f"DNS name {value!r} is longer than {MAX_NAME} bytes")
    return labels


def _escaped_labels(value: str) -> list[bytes]:
    """Labels of a name with escapes (rare: a plain name splits on dots)."""
    labels: list[bytes] = []
    label = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        if char == ".":
            labels.append(bytes(label))
            label = bytearray()
            index += 1
        elif char != "\\":
            label += char.encode("ascii")
            index += 1
        elif (
            value[index + 1 : index + 4].isdigit()
            and len(value[index + 1 : index + 4]) == 3
        ):
            code = int(value[index + 1 : index + 4])
            if code > 255:
                raise ValueError(f"DNS name {value!r}: escape \\{code} is not a byte")
            label.append(code)
            index += 4
        elif index + 1 < len(value):
            label += value[index + 1].encode("latin-1")
            index += 2
        else:
            raise ValueError(f"DNS name {value!r} ends with a lone backslash")
    labels.append(bytes(label))
    return labels


class DomainNameCodec:
    """The plug-in interface: decode, encode, strategy (see docs/dsl.md)."""

    @staticmethod
    def decode(
        data: Buffer, pos: int, end: int, origin: int, state: dict[str, Any]
    ) -> tuple[str, int]:
        """The name at `pos` and the offset after it (after the first pointer).

        `state` (one dict per frame) remembers the names decoded at each offset:
        a pointer to one of them costs a lookup, not another walk.
        """
        names: dict[int, str] = state.setdefault(_STATE_KEY, {})
        start = pos
        suffix = ""  # a name a pointer led to, already decoded
        labels: list[Buffer] = []
        append = labels.append
        after = -1
        limit = pos  # a pointer must point before this: strictly backwards
        total = 1
        while True:
            if pos >= end:
                raise MalformedFrame("domain name runs past its end")
            length = data[pos]
            if length == 0:
                pos += 1
                break
            if length <= MAX_LABEL:
                stop = pos + 1 + length
                if stop > end:
                    raise MalformedFrame(f"{length}-byte label runs past its end")
                total += length + 1
                if total > MAX_NAME:
                    raise MalformedFrame(f"domain name longer than {MAX_NAME} bytes")
                append(data[pos + 1 : stop])
                pos = stop
            elif length >= 0xC0:
                if pos + 1 >= end:
                    raise MalformedFrame("compression pointer runs past its end")
                target = origin + ((length & 0x3F) << 8 | data[pos + 1])
                if after < 0:
                    after = pos + 2
                if target >= limit:
                    raise MalformedFrame(
                        f"compression pointer to offset {target - origin} does not point "
                        "backwards"
                    )
                known = names.get(target)
                if known is not None:
                    suffix = known
                    break
                limit = pos = target
            else:
                raise MalformedFrame(f"unknown label type 0x{length & 0xC0:02x}")
        if not labels:  # a pointer to a name decoded before, or the root
            names[start] = suffix
            return suffix, after if after >= 0 else pos
        joined = b".".join(labels)
        # Plain labels (the usual case) and no dot inside one: the bytes are the text.
        if _PLAIN_NAME.fullmatch(joined) and joined.count(b".") == len(labels) - 1:
            name = joined.decode("ascii")
        else:
            name = ".".join(_label_text(bytes(label)) for label in labels)
        if suffix:
            if total + len(suffix) + 1 > MAX_NAME:
                raise MalformedFrame(f"domain name longer than {MAX_NAME} bytes")
            name = f"{name}.{suffix}"
        names[start] = name
        return name, after if after >= 0 else pos

    @staticmethod
    def encode(value: str, out: bytearray, origin: int, state: dict[str, Any]) -> None:
        """Append `value`, compressed against the names written before it."""
        labels = _labels(value)
        table: dict[tuple[bytes, ...], int] = state.setdefault(_STATE_KEY, {})
        for index, label in enumerate(labels):
            suffix = tuple(labels[index:])
            offset = table.get(suffix)
            if offset is not None:
                out += (0xC000 | offset).to_bytes(2, "big")
                return
            position = len(out) - origin
            if position < _POINTER_LIMIT:
                table[suffix] = position
            out.append(len(label))
            out += label
        out.append(0)

    @staticmethod
    def strategy() -> Any:
        """Hypothesis strategy of valid names (imported only by property tests)."""
        from hypothesis import strategies as st

        plain = st.text(
            "abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12
        )
        odd = st.binary(min_size=1, max_size=8).map(_label_text)
        label = st.one_of(plain, plain, plain, odd)
        names = st.lists(label, max_size=5).map(".".join)
        return names.filter(lambda name: _fits(name))


def _fits(name: str) -> bool:
    try:
        _labels(name)
    except ValueError:
        return False
    return True


domain_name = DomainNameCodec()

__all__ = ["DomainNameCodec", "domain_name", "labels", "text"]
