"""The DNS example's parts without a server: the generated codec of its spec (name
compression, pointer loops, labels holding dots, both framings), the zone file,
the answers (`answer.respond`) and the response rate limiter (`rrl.py`)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from protogen.errors import MalformedFrame
from served_example import EXAMPLES

ZONE_HEAD = (
    "example.com. 3600 SOA ns1.example.com. hostmaster.example.com. 1 2 3 4 60\n"
)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The example's generated codec and its answer, zone and rrl modules."""
    saved = os.environ.get("PROTOGEN_CACHE_DIR")
    os.environ["PROTOGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("unit-cache"))
    try:
        loader = importlib.util.spec_from_file_location(
            "dns_example_serve", EXAMPLES / "dns" / "serve.py"
        )
        assert loader is not None and loader.loader is not None
        serve = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(serve)
        modules, _ = serve.load_example()
    finally:
        if saved is None:
            del os.environ["PROTOGEN_CACHE_DIR"]
        else:
            os.environ["PROTOGEN_CACHE_DIR"] = saved
    import answer
    import rrl
    import zone

    yield {"codec": modules["codec"], "answer": answer, "zone": zone, "rrl": rrl}


def message(codec: ModuleType, **fields: Any) -> Any:
    values: dict[str, Any] = dict(  # noqa: C408 - keyword form reads as the header
        id=7, qr=0, opcode=0, aa=0, tc=0, rd=1, ra=0, z=0, ad=0, cd=0, rcode=0,
        questions=[], answers=[], authority=[], additional=[],
    )  # fmt: skip
    values.update(fields)
    return codec.Message(**values)


# -- the codec ------------------------------------------------------------------------------


def test_names_are_compressed_and_decode_back(example: dict[str, Any]) -> None:
    codec = example["codec"]
    a = codec.RRType.a
    original = message(
        codec,
        questions=[codec.Question("www.example.com", a, 1)],
        answers=[
            codec.ResourceRecord("www.example.com", a, codec.Record(1, 60, bytes(4))),
            codec.ResourceRecord(
                "example.com",
                codec.RRType.mx,
                codec.Record(1, 60, codec.Mx(5, "mx.example.com")),
            ),
        ],
    )
    wire = original.encode_datagram()
    assert wire.count(b"\x07example\x03com\x00") == 1
    assert b"\xc0\x0c" in wire  # the answer's owner points at the question
    assert b"\x02mx\xc0\x10" in wire  # "mx" then example.com inside the question
    [decoded], _ = codec.MessageDecoder().decode_datagram(wire)
    assert decoded == original
    # over TCP the same message follows its length, fed in any chunks
    stream = original.encode()
    assert stream == len(wire).to_bytes(2, "big") + wire
    reader = codec.MessageReader()
    frames = [frame for byte in stream for frame in reader.feed(bytes([byte]))]
    assert frames == [original]


def test_pointers_lead_to_any_label_or_pointer_of_an_earlier_name(
    example: dict[str, Any],
) -> None:
    codec = example["codec"]
    record = b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x01"
    wire = (
        bytes.fromhex("0007 8100 0001 0002 0000 0000")
        + b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"  # the question, at 12
        + b"\x02mx\xc0\x10" + record  # at 33: "mx", then the question's second label
        + b"\xc0\x24" + record  # at 52: the pointer at 36, a pointer itself
    )
    [decoded], _ = codec.MessageDecoder().decode_datagram(wire)
    assert [r.name for r in decoded.answers] == ["mx.example.com", "example.com"]
    # a name longer than 255 bytes, and one made so by its pointer
    long = b"\x3f" + b"a" * 63
    near = long * 3 + b"\x3c" + b"a" * 60  # 253 bytes: with a root, 254
    for name in (long * 4 + b"\x00", near + b"\xc0\x0c"):  # 257; 258 with "www"
        bad = bytes.fromhex("0007 8100 0002 0000 0000 0000") + b"\x03www\x00\x00\x01\x00\x01"
        with pytest.raises(MalformedFrame, match="Question.name: .*longer than 255"):
            codec.MessageDecoder().decode_datagram(bad + name + b"\x00\x01\x00\x01")


def test_a_label_holding_a_dot_round_trips_escaped(example: dict[str, Any]) -> None:
    codec = example["codec"]
    question = codec.Question("a\\.b.example.com", 1, 1)
    wire = question.encode()
    assert wire == b"\x03a.b\x07example\x03com\x00\x00\x01\x00\x01"
    assert codec.Question.decode(wire) == question


@pytest.mark.parametrize(
    "name, error",
    [
        (b"\xc0\x0c", "does not point backwards"),  # to itself
        (b"\x01x\xc0\x0c", "does not point backwards"),  # to its own first label
        (b"\xc0\x20", "does not point backwards"),  # forward
        (b"\x01x\xc0\x0d", "does not point backwards"),  # into its own first label
        (b"\x40", r"Label\[0\]\.kind: 1 names no arm"),  # the obsolete extended label
        (b"\x01x\x80", r"Label\[1\]\.kind: 2 names no arm"),
        (b"\x3fab", r"Label\[0\]: 63-byte bytes overrun the frame"),
        (b"\xc0\x00", "does not point backwards to a name"),  # into the header
    ],
)
def test_pointer_loops_and_bad_labels_do_not_decode(
    example: dict[str, Any], name: bytes, error: str
) -> None:
    codec = example["codec"]
    wire = bytes.fromhex("0007 0100 0001 0000 0000 0000") + name + b"\x00\x01\x00\x01"
    with pytest.raises(MalformedFrame, match=f"Question.name: .*{error}"):
        codec.MessageDecoder().decode_datagram(wire)


def test_unknown_record_types_keep_their_rdata_raw(example: dict[str, Any]) -> None:
    codec = example["codec"]
    record = codec.ResourceRecord(
        "example.com", 99, codec.Record(1, 5, b"\x01\x02\x03")
    )
    assert codec.ResourceRecord.decode(record.encode()) == record
    # a known type whose RDATA does not fill its region is refused
    bad = bytearray(codec.ResourceRecord("x", 1, codec.Record(1, 5, bytes(4))).encode())
    bad[-6:-4] = (5).to_bytes(2, "big")
    with pytest.raises(MalformedFrame, match="Record.rdata"):
        codec.ResourceRecord.decode(bytes(bad) + b"\x00")


# -- the zone -------------------------------------------------------------------------------


def test_zone_names_keep_escaped_dots_and_ignore_case(example: dict[str, Any]) -> None:
    zone_module = example["zone"]
    zone = zone_module.parse_zone(
        ZONE_HEAD
        + "a\\.b.Example.COM. A 192.0.2.1\n"
        + "a.b.example.com 60 IN A 192.0.2.2\n"
        + 'dot\\..example.com. TXT "x"\n'
    )
    key_of = zone_module.key_of
    assert zone.lookup(key_of("A\\.B.example.com"), 1) == [(300, b"\xc0\x00\x02\x01")]
    assert zone.lookup(key_of("a.b.example.com"), 1) == [(60, b"\xc0\x00\x02\x02")]
    assert zone.lookup((b"dot.", b"example", b"com"), 16) == [(300, [b"x"])]
    # an escaped final dot is part of the last label, not the root's dot
    assert zone_module._absolute("x.dot\\.") == "x.dot\\."
    assert zone_module._absolute("x.slash\\\\.") == "x.slash\\\\"
    assert zone.lookup(key_of("b.example.com"), 1) == []  # an empty non-terminal
    assert zone.lookup(key_of("c.example.com"), 1) is None
    assert zone.contains(key_of("example.com")) and not zone.contains(key_of("com"))
    assert not zone.contains(key_of("a\\.example.com"))  # one label, then "com"


@pytest.mark.parametrize(
    "text, error",
    [
        ("example.com. A 192.0.2.1\n", "no SOA record"),
        (ZONE_HEAD * 2, "a second SOA record"),
        (ZONE_HEAD + "example.org. A 192.0.2.1\n", "'example.org' is outside the zone"),
        (ZONE_HEAD + "x.example.com. A 300.1.1.1\n", "zone line 2"),
        (ZONE_HEAD + "x.example.com. HINFO a b\n", "unsupported type 'HINFO'"),
        (ZONE_HEAD + f'x.example.com. TXT "{"a" * 256}"\n', "at most 255 bytes"),
        (
            ZONE_HEAD + "x.example.com. MX mail.example.com.\n",
            "a preference and a name",
        ),
        (ZONE_HEAD + "x..example.com. A 192.0.2.1\n", "labels are 1 to 63 bytes"),
    ],
)
def test_bad_zone_files_are_refused_clearly(
    example: dict[str, Any], text: str, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        example["zone"].parse_zone(text)


# -- the answers ----------------------------------------------------------------------------


def ask(
    example: dict[str, Any], zone: Any, name: str, qtype: int = 1, **fields: Any
) -> Any:
    codec = example["codec"]
    query = message(codec, questions=[codec.Question(name, qtype, 1)], **fields)
    response, _ = example["answer"].respond(query, zone)
    # what goes on the wire decodes back to it
    [decoded], _ = codec.MessageDecoder().decode_datagram(response.encode_datagram())
    assert decoded == response
    return response


def test_cname_chains_stop_at_a_loop_and_at_the_zone_edge(
    example: dict[str, Any],
) -> None:
    zone = example["zone"].parse_zone(
        ZONE_HEAD
        + "a.example.com. CNAME b.example.com.\n"
        + "b.example.com. CNAME a.example.com.\n"
        + "out.example.com. CNAME www.example.org.\n"
    )
    looped = ask(example, zone, "a.example.com")
    assert (
        looped.rcode == 0 and len(looped.answers) == example["answer"].MAX_CNAME_CHAIN
    )
    out = ask(example, zone, "out.example.com")
    assert [r.record.rdata for r in out.answers] == ["www.example.org"]
    # asking for the CNAME itself does not follow it
    direct = ask(example, zone, "a.example.com", example["codec"].RRType.cname)
    assert [r.record.rdata for r in direct.answers] == ["b.example.com"]


def test_an_empty_non_terminal_is_nodata(example: dict[str, Any]) -> None:
    zone = example["zone"].parse_zone(ZONE_HEAD + "a.b.example.com. A 192.0.2.1\n")
    nodata = ask(example, zone, "b.example.com")
    assert (nodata.rcode, nodata.aa, nodata.answers) == (0, 1, [])
    assert [r.rtype for r in nodata.authority] == [6]
    assert nodata.authority[0].record.ttl == 60  # the SOA's minimum caps its TTL
    assert ask(example, zone, "c.example.com").rcode == 3


@pytest.mark.parametrize("section", ["answers", "authority"])
def test_an_opt_record_outside_the_additional_section_is_formerr(
    example: dict[str, Any], section: str
) -> None:
    codec, answer = example["codec"], example["answer"]
    zone = example["zone"].parse_zone(ZONE_HEAD)
    opt = codec.ResourceRecord("", 41, codec.Opt(1232, 0, 0, 0, 0, []))
    query = message(
        codec, questions=[codec.Question("example.com", 1, 1)], **{section: [opt]}
    )
    response, _ = answer.respond(query, zone)
    assert response.rcode == answer.FORMERR


def test_an_opt_record_not_owned_by_the_root_is_formerr(
    example: dict[str, Any],
) -> None:
    codec, answer = example["codec"], example["answer"]
    zone = example["zone"].parse_zone(ZONE_HEAD)
    opt = codec.ResourceRecord("example.com", 41, codec.Opt(1232, 0, 0, 0, 0, []))
    query = message(
        codec, questions=[codec.Question("example.com", 6, 1)], additional=[opt]
    )
    assert answer.respond(query, zone)[0].rcode == answer.FORMERR


@pytest.mark.parametrize(
    "offered, limit", [(None, 512), (100, 512), (1232, 1232), (65000, 4096)]
)
def test_the_udp_limit_follows_the_edns_size_within_bounds(
    example: dict[str, Any], offered: int | None, limit: int
) -> None:
    codec = example["codec"]
    additional = []
    if offered is not None:
        additional = [codec.ResourceRecord("", 41, codec.Opt(offered, 0, 0, 0, 0, []))]
    query = message(
        codec, questions=[codec.Question("example.com", 1, 1)], additional=additional
    )
    zone = example["zone"].parse_zone(ZONE_HEAD)
    assert example["answer"].respond(query, zone)[1] == limit


def test_truncated_keeps_the_question_and_the_opt_record(
    example: dict[str, Any],
) -> None:
    codec, answer = example["codec"], example["answer"]
    zone = example["zone"].parse_zone(ZONE_HEAD + "example.com. A 192.0.2.1\n")
    opt = codec.ResourceRecord("", 41, codec.Opt(1232, 0, 0, 0, 0, []))
    query = message(
        codec, questions=[codec.Question("example.com", 1, 1)], additional=[opt]
    )
    response, _ = answer.respond(query, zone)
    assert len(response.answers) == 1
    short = answer.truncated(response)
    assert (short.tc, short.aa, short.answers, short.authority) == (1, 1, [], [])
    assert short.questions == query.questions
    assert [r.rtype for r in short.additional] == [41]


def test_formerr_echoes_the_header_of_an_undecodable_query(
    example: dict[str, Any],
) -> None:
    answer = example["answer"]
    reply = answer.formerr(bytes.fromhex("abcd 1110 0001 0000 0000 0000"))
    assert (reply.id, reply.qr, reply.opcode, reply.rd, reply.cd) == (
        0xABCD,
        1,
        2,
        1,
        1,
    )
    assert reply.rcode == answer.FORMERR and reply.questions == []
    assert answer.formerr(bytes.fromhex("abcd 8000 0001 0000 0000 0000")) is None  # QR
    assert answer.formerr(b"\xab\xcd\x01") is None


# -- the response rate limit ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limiter_refills_per_network_and_slips(
    example: dict[str, Any],
) -> None:
    rrl = example["rrl"]
    SEND, SLIP, DROP = rrl.Verdict.SEND, rrl.Verdict.SLIP, rrl.Verdict.DROP
    clock = Clock()
    limiter = rrl.RateLimiter(2, slip=2, clock=clock)
    same = [(f"192.0.2.{n}", 53) for n in (1, 2, 3, 4, 5, 6)]
    assert [limiter.check(addr) for addr in same] == [
        SEND,
        SEND,
        DROP,
        SLIP,
        DROP,
        SLIP,
    ]
    assert limiter.check(("192.0.3.1", 53)) is SEND  # another /24
    clock.now += 0.5  # one token back
    assert [limiter.check(same[0]) for _ in range(3)] == [SEND, DROP, SLIP]
    clock.now += 10  # the bucket holds one second's worth, no more
    assert [limiter.check(same[0]) for _ in range(3)] == [SEND, SEND, DROP]


def test_the_rate_limiter_groups_ipv6_by_56_and_maps_ipv4(
    example: dict[str, Any],
) -> None:
    rrl = example["rrl"]
    limiter = rrl.RateLimiter(1, slip=0, clock=Clock())
    assert limiter.check(("2001:db8:0:1200::1", 53, 0, 0)) is rrl.Verdict.SEND
    assert limiter.check(("2001:db8:0:12ff::2", 53, 0, 0)) is rrl.Verdict.DROP
    assert limiter.check(("2001:db8:0:1300::1", 53, 0, 0)) is rrl.Verdict.SEND
    assert limiter.check(("198.51.100.7", 53)) is rrl.Verdict.SEND
    assert limiter.check(("::ffff:198.51.100.8", 53, 0, 0)) is rrl.Verdict.DROP


def test_the_rate_limiter_table_is_bounded(example: dict[str, Any]) -> None:
    rrl = example["rrl"]
    limiter = rrl.RateLimiter(1, slip=0, max_networks=2, clock=Clock())
    for n in range(10):
        assert limiter.check((f"10.0.{n}.1", 53)) is rrl.Verdict.SEND
    assert len(limiter._buckets) == 2
    # the most recently seen networks are the ones remembered
    assert limiter.check(("10.0.9.1", 53)) is rrl.Verdict.DROP
    assert limiter.check(("10.0.0.1", 53)) is rrl.Verdict.SEND


@pytest.mark.parametrize("rate, slip", [(0, 2), (-1, 2), (1, -1)])
def test_the_rate_limiter_refuses_bad_settings(
    example: dict[str, Any], rate: float, slip: int
) -> None:
    with pytest.raises(ValueError):
        example["rrl"].RateLimiter(rate, slip=slip)
