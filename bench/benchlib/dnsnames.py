"""A hand-written DNS name decoder, for the hand-written peers of bench/decode.py.

The DNS example's spec describes names itself (a `Label` value array, the
compression pointer followed by examples/dns/dns_names.py's `resolve`); the
hand-written decoders the benchmark compares it with parse names by hand, as a
hand-written DNS library would: this is the example's plug-in decoder from
before the spec could describe names (labels and pointers walked over the
bytes, names remembered per message in `state`).
"""

from __future__ import annotations

from typing import Any

from dns_names import _PLAIN_NAME, MAX_LABEL, MAX_NAME, _label_text, domain_name
from protogen.errors import MalformedFrame

Buffer = bytes | bytearray | memoryview
_STATE_KEY = "dns_names"


def decode_name(
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


def encode_name(value: str, out: bytearray, origin: int, state: dict[str, Any]) -> None:
    """The example hook's compressed labels, written by hand (the encode half)."""
    for item in domain_name.compress(value, len(out) - origin, state):
        if isinstance(item, int):
            out += (0xC000 | item).to_bytes(2, "big")
        else:
            out.append(len(item))
            out += item


class WholeNamePlugin:
    """The example's names as a plug-in of the whole name, as it was before the
    spec described labels (`extern DomainName: str = "benchlib.dnsnames:plugin"`)."""

    decode = staticmethod(decode_name)
    encode = staticmethod(encode_name)
    strategy = staticmethod(domain_name.strategy)


plugin = WholeNamePlugin()
