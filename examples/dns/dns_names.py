"""DNS domain names: the compression hook of the DNS spec's names.

The spec describes a name's bytes itself (`extern DomainName: str =
"dns_names:domain_name" from Label[until it.kind == 3 or it.length == 0]`):
the generated codec decodes the labels, each a plain value (bytes, or a
compression pointer's offset as an int), and hands them to
`domain_name.resolve`, which follows the pointer and gives the text; on encode
`domain_name.compress` gives the labels to write, a pointer for the longest
suffix already in the message. Both get a `state` dict of their own per frame.

Values are names in presentation form (RFC 1035 section 5.1) without the final
dot: "www.example.com", "" for the root. A label byte that is a dot, a
backslash or not printable ASCII is written as an escape (`\\.`, `\\\\`, `\\DDD`),
so every wire name has exactly one text form. `labels(name)` and
`text(labels)` convert between the two forms (the zone uses them for its keys).

A pointer (RFC 1035 section 4.1.4) must lead to a label, or the tail, of a
name decoded before it in the same message, which makes pointer loops
impossible. Suffixes match case-sensitively, so a decoded name is exactly the
name that was encoded.
"""

from __future__ import annotations

import re
from typing import Any

from protogen.errors import MalformedFrame

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


# A decoded name: its text and wire size, then its labels and the text and size
# of what ends it (the root, or where its pointer led), for pointers into it.
_Name = tuple[str, int, list[bytes], str, int]
_NO_LABELS: list[bytes] = []  # a name that is only a pointer (never changed)


def _inside(names: dict[int, _Name], target: int) -> _Name:
    """The name a pointer to `target` names when that is not where a name
    starts: a later label of one (rare; remembered for the next pointer)."""
    for start, (_, _, labels, suffix, suffix_size) in list(names.items()):
        position = start
        for index, label in enumerate(labels):
            position += len(label) + 1
            if position == target:
                rest = labels[index + 1 :]
                texts = [_label_text(label) for label in rest]
                text = ".".join([*texts, suffix] if suffix else texts)
                size = sum(len(label) + 1 for label in rest) + suffix_size
                names[target] = found = (text, size, rest, suffix, suffix_size)
                return found
    raise MalformedFrame(
        f"compression pointer to offset {target} does not point backwards to a name"
    )


class DomainNameCodec:
    """The hook of `extern DomainName: str = ... from Label[...]`: resolve,
    compress, strategy (docs/dsl.md, "Names read from a value array")."""

    @staticmethod
    def resolve(items: list[bytes | int], offset: int, state: dict[str, Any]) -> str:
        """The name whose labels the codec decoded at message offset `offset`.

        `items` ends with the empty label or a pointer (an int offset), which
        must name a position of a name decoded before this one in the same
        message (`state` remembers them): strictly backwards, so no loops.
        """
        names: dict[int, _Name] | None = state.get(_STATE_KEY)
        if names is None:
            names = state[_STATE_KEY] = {}
        tail = items.pop()
        if isinstance(tail, int):
            # Only names before `offset` are known: pointers lead strictly backwards.
            known = names.get(tail) or _inside(names, tail)
            suffix, size = known[0], known[1]
        else:
            suffix, size = "", 1
        if not items:
            names[offset] = (suffix, size, _NO_LABELS, suffix, size)
            return suffix
        labels: list[bytes] = items  # type: ignore[assignment] # the tail was the int
        joined = b".".join(labels)
        # Plain labels (the usual case) and no dot inside one: the bytes are the text.
        if _PLAIN_NAME.fullmatch(joined) and joined.count(b".") == len(labels) - 1:
            name = joined.decode("ascii")
        else:
            name = ".".join([_label_text(label) for label in labels])
        if suffix:
            name = f"{name}.{suffix}"
        whole = size + len(joined) + 1
        if whole > MAX_NAME:
            raise MalformedFrame(f"domain name longer than {MAX_NAME} bytes")
        names[offset] = (name, whole, labels, suffix, size)
        return name

    @staticmethod
    def compress(value: str, offset: int, state: dict[str, Any]) -> list[bytes | int]:
        """The labels of `value`, the longest suffix written before a pointer.

        ValueError for a name no message can carry. `offset` is where the name
        starts in the message; `state` remembers the suffixes written.
        """
        labels = _labels(value)
        table: dict[tuple[bytes, ...], int] = state.setdefault(_STATE_KEY, {})
        position = offset
        for index, label in enumerate(labels):
            suffix = tuple(labels[index:])
            target = table.get(suffix)
            if target is not None:
                return [*labels[:index], target]
            if position < _POINTER_LIMIT:
                table[suffix] = position
            position += len(label) + 1
        return [*labels, b""]

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
