"""Decode speed: the generated codec vs a careful hand-written `struct` decoder vs Construct.

    python bench/decode.py [--rounds 5] [--seconds 0.3] [--cpu 1]
    python bench/decode.py --instructions      # under valgrind: noise-free
    make bench-decode

Three messages, each decoded from the same bytes by the three peers into the
same objects (every peer's result is checked equal to the generated one's
before timing): an MQTT 3.1.1 PUBLISH (QoS 1, topic, packet id, 64-byte
payload), a DNS response with 4 answers (compressed names) over TCP, and a
masked 1 KiB WebSocket client frame (16-bit length form). Every peer returns
(frame, end), as a streaming decoder must. The specs are the examples' own:
examples/mqtt/mqtt.proto.dsl, examples/dns/dns.proto.dsl (its names are label
arrays the spec describes, pointers resolved by the example's hook, dns_names.py;
the hand-written peers parse names by hand, benchlib/dnsnames.py) and
examples/websocket/websocket.proto.dsl.

The hand-written decoders are what a careful programmer writes with the
standard library: precompiled `struct.Struct`, memoryview slices, bounds
checks before every read, the same classes. Construct parses declarative
equivalents of the same formats (it is the library a Python user would pick).

Each round times every peer on every message for about `--seconds`, the peers
taking turns batch by batch (so a burst of load hits them alike); the table
shows the median messages/s of the rounds, the ratio of those medians and the
paired ratio (the median of each round's own ratio). `--instructions` counts
CPU instructions per decode instead (valgrind's callgrind: each peer decodes
5000 times, Construct 500, in a process of its own, minus the same process
decoding nothing), which a shared machine does not disturb. Goals: generated >= 1.0x
hand-written, >= 10x Construct.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
# The DNS spec's name-compression hook, beside it (the hand-written name decoder
# of benchlib.dnsnames imports its text helpers).
sys.path.insert(0, str(EXAMPLES / "dns"))

from benchlib.callgrind import instructions as callgrind_instructions  # noqa: E402
from benchlib.dnsnames import decode_name as handwritten_decode_name  # noqa: E402

from protogen.errors import MalformedFrame  # noqa: E402

Buffer = bytes | bytearray | memoryview


SPEC_PATHS = {
    "mqtt": EXAMPLES / "mqtt" / "mqtt.proto.dsl",
    "dns": EXAMPLES / "dns" / "dns.proto.dsl",
    "websocket": EXAMPLES / "websocket" / "websocket.proto.dsl",
}
CODEC_MODULES = {"mqtt": "mqtt_codec", "dns": "dns_codec", "websocket": "websocket_codec"}


def build(directory: Path) -> dict[str, ModuleType]:
    """The generated codecs of the three specs, written into `directory`."""
    from protogen.generator import generate, write_outputs
    from protogen.parser import load_spec

    for path in SPEC_PATHS.values():
        write_outputs(generate(load_spec(path)), directory)
    return load(directory)


def load(directory: Path) -> dict[str, ModuleType]:
    """The generated codecs in `directory`, imported."""
    sys.path.insert(0, str(directory))
    return {key: importlib.import_module(name) for key, name in CODEC_MODULES.items()}


# --- the messages ------------------------------------------------------------------------


def messages(codecs: dict[str, ModuleType]) -> dict[str, bytes]:
    mqtt, dns, ws = codecs["mqtt"], codecs["dns"], codecs["websocket"]
    publish = mqtt.Packet(
        type=mqtt.PacketType.publish,
        dup=0,
        qos=1,
        retain=0,
        packet=mqtt.Publish(
            topic="sensors/kitchen/temperature", packet_id=4242, payload=bytes(range(64))
        ),
    )
    answers = [
        dns.ResourceRecord("www.example.com", 1, dns.Record(1, 300, bytes((93, 184, 216, n))))
        for n in range(4)
    ]
    response = dns.Message(
        id=0x1234, qr=1, opcode=0, aa=1, tc=0, rd=1, ra=1, z=0, ad=0, cd=0, rcode=0,
        questions=[dns.Question("www.example.com", 1, 1)],
        answers=answers, authority=[], additional=[],
    )
    frame = ws.ClientFrame(
        fin=1, opcode=ws.Opcode.binary, masking_key=b"\x37\xfa\x21\x3d",
        payload=bytes(range(256)) * 4,
    )
    return {
        "MQTT PUBLISH": publish.encode(),
        "DNS response, 4 answers": response.encode(),
        "WebSocket frame, 1 KiB masked": frame.encode(),
    }


# --- hand-written decoders ------------------------------------------------------------------


def hand_written(codecs: dict[str, ModuleType]) -> dict[str, Callable[[Buffer], Any]]:
    mqtt, dns, ws = codecs["mqtt"], codecs["dns"], codecs["websocket"]
    u16 = struct.Struct(">H")
    u64 = struct.Struct(">Q")
    question_tail = struct.Struct(">HH")
    record_fixed = struct.Struct(">HHIH")  # type, class, ttl, rdlength
    dns_header = struct.Struct(">HHHHHHH")
    packet_types = {member.value: member for member in mqtt.PacketType}
    opcodes = {member.value: member for member in ws.Opcode}
    decode_name = handwritten_decode_name
    mqtt_max, dns_max, websocket_max = 1 << 20, 65537, 4 << 20
    opt = 41
    publish_type = mqtt.PacketType.publish
    opt_flags = struct.Struct(">BBH")

    def mqtt_publish(data: Buffer) -> Any:
        size = len(data)
        if size < 2:
            return None, 0
        control = data[0]
        ptype = packet_types.get(control >> 4)
        if ptype is None:
            raise MalformedFrame("bad packet type")
        # remaining length: base-128, at most 4 bytes
        value = shift = 0
        pos = 1
        while True:
            if pos >= size or pos > 4:
                raise MalformedFrame("bad remaining length")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        end = pos + value
        if end > mqtt_max:
            raise MalformedFrame("frame too large")
        if end > size:
            return None, 0
        qos = control >> 1 & 3
        # A whole MQTT decoder goes through the packet types, in their order.
        if ptype == 1 or ptype == 2:
            raise MalformedFrame("CONNECT / CONNACK: not in this benchmark")
        if ptype != publish_type:
            raise MalformedFrame("other packet types: not in this benchmark")
        if qos == 3:
            raise MalformedFrame("QoS 3")
        if pos + 2 > end:
            raise MalformedFrame("topic overruns")
        (length,) = u16.unpack_from(data, pos)
        pos += 2
        stop = pos + length
        if stop > end:
            raise MalformedFrame("topic overruns")
        topic = str(data[pos:stop], "utf-8")
        pos = stop
        packet_id = None
        if qos:
            if pos + 2 > end:
                raise MalformedFrame("packet id overruns")
            (packet_id,) = u16.unpack_from(data, pos)
            pos += 2
            if not packet_id:
                raise MalformedFrame("packet id 0")
        packet = mqtt.Packet(
            ptype, control >> 3 & 1, qos, control & 1,
            mqtt.Publish(topic, bytes(data[pos:end]), packet_id), control,
        )
        return packet, end

    def dns_response(data: Buffer) -> Any:
        size = len(data)
        if size < 14:
            return None, 0
        length, ident, flags, qd, an, ns, ar = dns_header.unpack_from(data, 0)
        end = 2 + length
        if end > dns_max:
            raise MalformedFrame("frame too large")
        if end > size:
            return None, 0
        pos = 14
        state: dict[str, Any] = {}

        def records(count: int) -> list[Any]:
            nonlocal pos
            out = []
            for _ in range(count):
                name, pos = decode_name(data, pos, end, 2, state)
                if pos + 10 > end:
                    raise MalformedFrame("record overruns")
                rtype, rclass, ttl, rdlength = record_fixed.unpack_from(data, pos)
                pos += 10
                stop = pos + rdlength
                if stop > end:
                    raise MalformedFrame("rdata overruns")
                if rtype == opt:  # EDNS: class and TTL hold the OPT fields
                    rcode, version, flag_bits = opt_flags.unpack_from(data, pos - 6)
                    raise MalformedFrame("OPT: not in this benchmark")
                if rtype == 1:
                    if rdlength != 4:
                        raise MalformedFrame("A record of the wrong size")
                    rdata: Any = bytes(data[pos:stop])
                else:
                    raise MalformedFrame("other types: not in this benchmark")
                pos = stop
                out.append(dns.ResourceRecord(name, rtype, dns.Record(rclass, ttl, rdata)))
            return out

        questions = []
        for _ in range(qd):
            name, pos = decode_name(data, pos, end, 2, state)
            if pos + 4 > end:
                raise MalformedFrame("question overruns")
            qtype, qclass = question_tail.unpack_from(data, pos)
            pos += 4
            questions.append(dns.Question(name, qtype, qclass))
        answers = records(an)
        authority = records(ns)
        additional = records(ar)
        if pos != end:
            raise MalformedFrame("bytes after the message")
        message = dns.Message(
            ident, flags >> 15, flags >> 11 & 0xF, flags >> 10 & 1, flags >> 9 & 1,
            flags >> 8 & 1, flags >> 7 & 1, flags >> 6 & 1, flags >> 5 & 1,
            flags >> 4 & 1, flags & 0xF, questions, answers, authority, additional,
            length, flags, qd, an, ns, ar,
        )
        return message, end

    def websocket_frame(data: Buffer) -> Any:
        size = len(data)
        if size < 2:
            return None, 0
        b0, b1 = data[0], data[1]
        if b0 & 0x70 or not b1 & 0x80:
            raise MalformedFrame("reserved bits or unmasked")
        opcode = opcodes.get(b0 & 0xF)
        if opcode is None:
            raise MalformedFrame("bad opcode")
        length = b1 & 0x7F
        pos = 2
        if length == 126:
            if size < 4:
                return None, 0
            (length,) = u16.unpack_from(data, 2)
            pos = 4
            if length < 126:
                raise MalformedFrame("non-minimal length")
        elif length == 127:
            if size < 10:
                return None, 0
            (length,) = u64.unpack_from(data, 2)
            pos = 10
            if length < 65536:
                raise MalformedFrame("non-minimal length")
        end = pos + 4 + length
        if end > websocket_max:
            raise MalformedFrame("frame too large")
        if end > size:
            return None, 0
        fin = b0 >> 7
        if opcode >= 8 and (not fin or length > 125):
            raise MalformedFrame("bad control frame")
        key = bytes(data[pos : pos + 4])
        payload = data[pos + 4 : end]
        stream = key * (length // 4 + 1)
        unmasked = (
            int.from_bytes(payload, "little") ^ int.from_bytes(stream[:length], "little")
        ).to_bytes(length, "little")
        frame = ws.ClientFrame(fin, opcode, key, unmasked, b0, 0, 0, 0, b1, 1, length)
        return frame, end

    return {
        "MQTT PUBLISH": mqtt_publish,
        "DNS response, 4 answers": dns_response,
        "WebSocket frame, 1 KiB masked": websocket_frame,
    }


# --- Construct -----------------------------------------------------------------------------


def construct_parsers(codecs: dict[str, ModuleType]) -> dict[str, Callable[[Buffer], Any]]:
    import construct as c

    mqtt, dns, ws = codecs["mqtt"], codecs["dns"], codecs["websocket"]

    class DnsName(c.Construct):  # type: ignore[misc]
        """Names with compression pointers (the hand-written decoder), over Construct's stream."""

        def _parse(self, stream: Any, context: Any, path: str) -> Any:
            buffer = stream.getbuffer()
            root = context._root if "_root" in context else context
            memory = root.setdefault("_dns_names", {})  # one per message, as above
            name, end = handwritten_decode_name(buffer, stream.tell(), len(buffer), 2, memory)
            stream.seek(end)
            return name

    publish = c.Struct(
        "topic" / c.PascalString(c.Int16ub, "utf8"),
        "packet_id" / c.If(c.this._.control.qos > 0, c.Int16ub),
        "payload" / c.GreedyBytes,
    )
    packet = c.Struct(
        "control" / c.BitStruct(
            "type" / c.BitsInteger(4), "dup" / c.Flag, "qos" / c.BitsInteger(2), "retain" / c.Flag
        ),
        "length" / c.VarInt,
        "packet" / c.FixedSized(c.this.length, c.Switch(c.this.control.type, {3: publish})),
    )
    question = c.Struct("name" / DnsName(), "qtype" / c.Int16ub, "qclass" / c.Int16ub)
    record = c.Struct(
        "name" / DnsName(), "rtype" / c.Int16ub, "rclass" / c.Int16ub, "ttl" / c.Int32ub,
        "rdata" / c.Prefixed(c.Int16ub, c.GreedyBytes),
    )
    message = c.Struct(
        "length" / c.Int16ub, "id" / c.Int16ub, "flags" / c.Int16ub,
        "qdcount" / c.Int16ub, "ancount" / c.Int16ub, "nscount" / c.Int16ub, "arcount" / c.Int16ub,
        "questions" / c.Array(c.this.qdcount, question),
        "answers" / c.Array(c.this.ancount, record),
        "authority" / c.Array(c.this.nscount, record),
        "additional" / c.Array(c.this.arcount, record),
    )
    frame = c.Struct(
        "b0" / c.BitStruct("fin" / c.Flag, "rsv" / c.BitsInteger(3), "opcode" / c.BitsInteger(4)),
        "b1" / c.BitStruct("masked" / c.Flag, "len7" / c.BitsInteger(7)),
        "length" / c.Switch(
            c.this.b1.len7, {126: c.Int16ub, 127: c.Int64ub}, default=c.Computed(c.this.b1.len7)
        ),
        "key" / c.If(c.this.b1.masked, c.Bytes(4)),
        "payload" / c.ProcessXor(c.this.key, c.Bytes(c.this.length)),
    )

    def mqtt_publish(data: Buffer) -> Any:
        parsed = packet.parse(data)
        end = 1 + len(c.VarInt.build(parsed.length)) + parsed.length
        control, body = parsed.control, parsed.packet
        if body.packet_id == 0:
            raise c.ValidationError("packet id 0")
        return mqtt.Packet(
            mqtt.PacketType(control.type), int(control.dup), control.qos, int(control.retain),
            mqtt.Publish(body.topic, body.payload, body.packet_id),
        ), end

    def dns_response(data: Buffer) -> Any:
        parsed = message.parse(data)
        flags = parsed.flags

        def records(items: Any) -> list[Any]:
            return [
                dns.ResourceRecord(r.name, r.rtype, dns.Record(r.rclass, r.ttl, r.rdata))
                for r in items
            ]

        return dns.Message(
            parsed.id, flags >> 15, flags >> 11 & 0xF, flags >> 10 & 1, flags >> 9 & 1,
            flags >> 8 & 1, flags >> 7 & 1, flags >> 6 & 1, flags >> 5 & 1,
            flags >> 4 & 1, flags & 0xF,
            [dns.Question(q.name, q.qtype, q.qclass) for q in parsed.questions],
            records(parsed.answers), records(parsed.authority), records(parsed.additional),
        ), 2 + parsed.length

    def websocket_frame(data: Buffer) -> Any:
        parsed = frame.parse(data)
        size = 2 + {126: 2, 127: 8}.get(parsed.b1.len7, 0) + 4 + parsed.length
        return ws.ClientFrame(
            int(parsed.b0.fin), ws.Opcode(parsed.b0.opcode), parsed.key, parsed.payload
        ), size

    return {
        "MQTT PUBLISH": mqtt_publish,
        "DNS response, 4 answers": dns_response,
        "WebSocket frame, 1 KiB masked": websocket_frame,
    }


# --- timing ----------------------------------------------------------------------------------


def batch_size(decode: Callable[[Buffer], Any], data: Buffer, seconds: float) -> int:
    """Calls taking about `seconds`."""
    batch = 1
    while True:
        began = time.perf_counter()
        for _ in range(batch):
            decode(data)
        if time.perf_counter() - began > seconds or batch > 1 << 22:
            return batch
        batch *= 2


def rates(
    decoders: dict[str, Callable[[Buffer], Any]], data: Buffer, seconds: float
) -> dict[str, float]:
    """Messages per second of each peer over about `seconds`, peers taking turns
    in batches of ~10 ms (one clock read per batch)."""
    batches = {peer: batch_size(decode, data, 0.01) for peer, decode in decoders.items()}
    spent = dict.fromkeys(decoders, 0.0)
    done = dict.fromkeys(decoders, 0)
    deadline = time.perf_counter() + seconds * len(decoders)
    while time.perf_counter() < deadline:
        for peer, decode in decoders.items():
            batch = batches[peer]
            began = time.perf_counter()
            for _ in range(batch):
                decode(data)
            spent[peer] += time.perf_counter() - began
            done[peer] += batch
    return {peer: done[peer] / spent[peer] for peer in decoders}


def instructions(directory: Path, peers: list[str], names: list[str]) -> None:
    """Instructions per decode, under callgrind (see the module docstring)."""
    others = [p for p in peers if p != "generated"]
    print("decode, CPU instructions per message (callgrind)\n")
    print(
        "| message | " + " | ".join(peers) + " | "
        + " | ".join(f"generated / {p}" for p in others) + " |"
    )
    print("|" + "---|" * (len(peers) + len(others) + 1))
    for name in names:
        counts = {}
        for peer in peers:
            total = []
            # Construct is some 15x slower: fewer calls give as exact an average.
            repeat = 500 if peer == "construct" else 5000
            for calls in (0, repeat):
                total.append(callgrind_instructions([
                    sys.executable, __file__, "--dir", str(directory),
                    "--one", f"{peer}:{name}:{calls}",
                ]))  # fmt: skip
            counts[peer] = (total[1] - total[0]) / repeat
        row = f"| {name} | " + " | ".join(f"{counts[p]:,.0f}" for p in peers)
        for other in others:
            row += f" | {counts[other] / counts['generated']:.2f}x"
        print(row + " |", flush=True)


def decoders_for(codecs: dict[str, ModuleType]) -> dict[str, dict[str, Callable[[Buffer], Any]]]:
    peers: dict[str, dict[str, Callable[[Buffer], Any]]] = {
        "generated": {
            "MQTT PUBLISH": codecs["mqtt"].PacketDecoder().decode,
            "DNS response, 4 answers": codecs["dns"].MessageDecoder().decode,
            "WebSocket frame, 1 KiB masked": codecs["websocket"].ClientFrameDecoder().decode,
        },
        "hand-written": hand_written(codecs),
    }
    try:
        peers["construct"] = construct_parsers(codecs)
    except ImportError:
        print("construct is not installed (pip install -e '.[bench]'): skipped")
    return peers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="decode.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (medians; default 5)")
    parser.add_argument("--seconds", type=float, default=0.3, help="time per peer per round")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU (Linux)")
    parser.add_argument("--instructions", action="store_true", help="count instructions (valgrind)")
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)  # internal, with --one
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: PEER:MESSAGE:CALLS
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    if args.one:
        peer, name, calls = args.one.split(":")
        codecs = load(args.dir)
        decode = decoders_for(codecs)[peer][name]
        view = memoryview(messages(codecs)[name])
        for _ in range(int(calls)):
            decode(view)
        return 0
    with tempfile.TemporaryDirectory(prefix="protogen-bench-decode-") as tmp:
        codecs = build(Path(tmp))
        wires = messages(codecs)
        peers = decoders_for(codecs)
        for name, data in wires.items():
            expected = peers["generated"][name](data)
            for peer, decoders in peers.items():
                got = decoders[name](data)
                assert got == expected, (peer, name, got, expected)
        order = list(peers)
        if args.instructions:
            instructions(Path(tmp), order, list(wires))
            return 0
        results: dict[tuple[str, str], list[float]] = {}
        paired: dict[tuple[str, str], list[float]] = {}
        for round_number in range(args.rounds):
            turn = order[round_number % len(order) :] + order[: round_number % len(order)]
            for name, data in wires.items():
                # Decode from a memoryview, as the runtime hands buffers to codecs.
                view = memoryview(data)
                got = rates({peer: peers[peer][name] for peer in turn}, view, args.seconds)
                for peer, value in got.items():
                    results.setdefault((name, peer), []).append(value)
                for other in order[1:]:
                    paired.setdefault((name, other), []).append(got["generated"] / got[other])
        print(f"decode, messages/s (median of {args.rounds} rounds, peers taking turns)\n")
        others = order[1:]
        header = "| message | " + " | ".join(order) + " | " + " | ".join(
            f"generated / {p} (paired)" for p in others
        ) + " |"
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        for name in wires:
            medians = {peer: statistics.median(results[(name, peer)]) for peer in order}
            row = f"| {name} | " + " | ".join(f"{medians[p]:,.0f}" for p in order)
            for other in others:
                ratio = medians["generated"] / medians[other]
                pairs = statistics.median(paired[(name, other)])
                row += f" | {ratio:.2f}x ({pairs:.2f}x)"
            print(row + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
