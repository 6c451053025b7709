"""What DNS names cost as the spec describes them, against a whole-name plug-in (issue #14).

    python bench/dns_labels.py                  # instructions per decode (valgrind)

Decodes the DNS response of bench/decode.py (4 answers, compressed names) with
three decoders and counts CPU instructions per message under callgrind (5000
decodes minus a process decoding nothing, as bench/decode.py does):

- spec: the example's spec as it is: names are `Label` value arrays (one
  generated loop, each label a plain value: its bytes, or the pointer's
  offset as an int), then dns_names.py's `resolve` hook follows the pointer
  and makes the text (docs/dsl.md, "Names read from a value array");
- plugin: the same spec with names as a plug-in of the whole name, the
  example's design before the spec could describe labels (labels and pointers
  walked by hand, bench/benchlib/dnsnames.py; the hand-written peers of
  bench/decode.py use the same function);
- labels: the same spec with names as an array of a `Label` struct
  (tests/codegen/specs/dns_labels.proto.dsl: one object per label), pointers
  not resolved and no text made: why the elements are values, not structures.

Results (2026-12-02, CPython 3.11): spec 85,242, plugin 82,128, labels
89,633; the hand-written decoder of bench/decode.py 92,430 (docs/benchmarks.md).
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
    wire = re.compile(r"union Label .*?\n}\n|extern DomainName:.*?\]\n", re.DOTALL)
    plain = wire.sub("", text)
    variants = {
        "dnsl": plain.replace("DomainName", "Name") + LABELS,
        "dnsp": 'extern DomainName: str = "benchlib.dnsnames:plugin"\n' + plain,
    }
    for name, variant_text in variants.items():
        variant = directory / f"{name}.proto.dsl"
        variant.write_text(variant_text.replace("protocol dns", f"protocol {name}"))
        write_outputs(generate(load_spec(variant)), directory)


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
    sys.path[:0] = [str(directory), str(REPO / "examples" / "dns"), str(REPO / "bench")]
    import dns_codec
    import dnsl_codec
    import dnsp_codec

    codec = {"spec": dns_codec, "plugin": dnsp_codec, "labels": dnsl_codec}[peer]
    decode = codec.MessageDecoder().decode
    view = memoryview(message(dns_codec))
    frame, end = decode(view)
    assert end == len(view) and len(frame.answers) == 4, (peer, frame)
    if peer != "labels":
        assert [a.name for a in frame.answers] == ["www.example.com"] * 4, frame
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
        for peer in ("spec", "plugin", "labels"):
            total = []
            for calls in (0, repeat):
                total.append(callgrind_instructions([sys.executable, __file__, tmp, peer, str(calls)]))
            print(f"| {peer} | {(total[1] - total[0]) / repeat:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
