"""What DNS names as spec-described label arrays cost, against the plug-in (issue #14).

    python bench/dns_labels.py                  # instructions per decode (valgrind)

Decodes the DNS response of bench/decode.py (4 answers, compressed names) with
three decoders and counts CPU instructions per message under callgrind (5000
decodes minus a process decoding nothing, as bench/decode.py does):

- plugin: the example's spec as it is (names are dns_names.py's plug-in, which
  also resolves compression pointers to text);
- labels: the same spec with every DomainName replaced by the label array of
  tests/codegen/specs/dns_labels.proto.dsl, as generated today (one Label
  struct object per label; pointers not resolved);
- values: the same generated codec with `_decode_name` swapped for a loop
  that keeps each label as a plain value (bytes, or the pointer's offset as an
  int) instead of a struct object: the shape a specialised generated loop for
  terminated arrays of a tiny union could take. Pointers not resolved.
- resolved: `values`, then a per-name hook (the plug-in's part in that
  design) that follows the compression pointer to a name decoded earlier in
  the same message (strictly backwards, else MalformedFrame naming the field)
  and makes the text, as the plug-in does: the whole cost of the design.

It is a measurement for the design of that loop, not a peer of bench/decode.py
(the `labels` and `values` decoders do less work than the plug-in: no pointer
resolution, no text).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib.callgrind import instructions as callgrind_instructions

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "examples" / "dns" / "dns.proto.dsl"
LABELS = """
struct Name {
    labels: Label[until it.kind == 3 or it.length == 0]
}

struct Label {
    head: u8 bits { kind: 2, length: 6 } where kind == 0 or kind == 3
    part: switch kind {
        0 => bytes[length]
        3 => u8
    }
}
"""


def build(directory: Path) -> None:
    from protogen.generator import generate, write_outputs
    from protogen.parser import load_spec

    write_outputs(generate(load_spec(SPEC)), directory)
    text = SPEC.read_text()
    text = re.sub(r"extern DomainName:.*\n", "", text)
    text = text.replace("DomainName", "Name").replace("protocol dns", "protocol dnsl")
    variant = directory / "dnsl.proto.dsl"
    variant.write_text(text + LABELS)
    write_outputs(generate(load_spec(variant)), directory)


def values_decoder(codec: Any, resolve: bool = False) -> Any:
    """`_decode_name` keeping labels as values (see the module docstring)."""
    from protogen.errors import MalformedFrame

    name_class = codec.Name

    def decode_name(data: Any, pos: int, end: int) -> tuple[Any, int]:
        items: list[bytes | int] = []
        start = pos
        append = items.append
        while True:
            if pos >= end:
                raise MalformedFrame("Name.labels: label overruns the frame")
            head = data[pos]
            pos += 1
            if head < 0x40:
                stop = pos + head
                if stop > end:
                    raise MalformedFrame(f"Name.labels: {head}-byte label overruns the frame")
                append(bytes(data[pos:stop]))
                pos = stop
                if not head:
                    break
            elif head >= 0xC0:
                if pos >= end:
                    raise MalformedFrame("Name.labels: pointer overruns the frame")
                append((head & 0x3F) << 8 | data[pos])
                pos += 1
                break
            else:
                raise MalformedFrame(f"Name.labels: label type 0x{head & 0xC0:02x}")
        obj = name_class.__new__(name_class)
        obj.labels = items if not resolve else resolved(items, start, names)
        return obj, pos

    names: dict[int, str] = {}  # per frame in a real hook; a message start resets it

    def resolved(labels: list[bytes | int], start: int, known: dict[int, str]) -> str:
        if start == 2:  # the message's first name (after the TCP length): a new frame
            known.clear()
        last = labels[-1]
        if last.__class__ is int:
            target = 2 + last  # type: ignore[operator]
            text = known.get(target)
            if text is None or target >= start:
                raise MalformedFrame(
                    f"Name.labels: pointer to offset {last} is not an earlier name"
                )
            if len(labels) > 1:
                text = b".".join(labels[:-1]).decode("ascii") + "." + text  # type: ignore[arg-type]
        else:
            text = b".".join(labels[:-1]).decode("ascii")  # type: ignore[arg-type]
        known[start] = text
        return text

    return decode_name


def message(dns: Any) -> bytes:
    answers = [
        dns.ResourceRecord("www.example.com", 1, dns.Record(1, 300, bytes((93, 184, 216, n))))
        for n in range(4)
    ]
    return bytes(dns.Message(
        id=0x1234, qr=1, opcode=0, aa=1, tc=0, rd=1, ra=1, z=0, ad=0, cd=0, rcode=0,
        questions=[dns.Question("www.example.com", 1, 1)],
        answers=answers, authority=[], additional=[],
    ).encode())


def one(directory: Path, peer: str, calls: int) -> None:
    sys.path[:0] = [str(directory), str(REPO / "examples" / "dns")]
    import dns_codec
    import dnsl_codec

    if peer == "plugin":
        decode = dns_codec.MessageDecoder().decode
    else:
        if peer in ("values", "resolved"):
            dnsl_codec._decode_name = values_decoder(  # type: ignore[attr-defined]
                dnsl_codec, resolve=peer == "resolved"
            )
        decode = dnsl_codec.MessageDecoder().decode
    view = memoryview(message(dns_codec))
    frame, end = decode(view)
    assert end == len(view) and len(frame.answers) == 4, (peer, frame)
    if peer == "resolved":
        assert [a.name.labels for a in frame.answers] == ["www.example.com"] * 4, frame
    for _ in range(calls):
        decode(view)


def main() -> int:
    if len(sys.argv) == 4:
        one(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
        return 0
    repeat = 5000
    with tempfile.TemporaryDirectory(prefix="protogen-bench-labels-") as tmp:
        build(Path(tmp))
        print("DNS response, 4 answers: CPU instructions per decode (callgrind)\n")
        print("| decoder | instructions |\n|---|---|")
        for peer in ("plugin", "labels", "values", "resolved"):
            total = []
            for calls in (0, repeat):
                total.append(callgrind_instructions([sys.executable, __file__, tmp, peer, str(calls)]))
            print(f"| {peer} | {(total[1] - total[0]) / repeat:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
