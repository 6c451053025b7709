# dns.proto.dsl — DNS messages (RFC 1035, EDNS(0) RFC 6891) over TCP and UDP.
#
# Over TCP every message follows a 2-byte big-endian length (RFC 1035 4.2.2);
# over UDP a datagram is one message with no prefix: `stream_only` says so.
# The whole message is typed: the header's flag bits, the questions and the
# resource records of the three sections, RDATA chosen by the record type
# (unknown types stay raw bytes), and the EDNS OPT pseudo-record, which reuses
# the class and TTL fields for its payload size, extended RCODE, version and
# flags. Names are labels up to the empty label or a compression pointer
# (RFC 1035 4.1.4); dns_names.py follows the pointers strictly backwards on
# decode (no loops) and writes one for every repeated suffix on encode.
protocol dns
transport tcp, udp
max_frame 65537                 # the u16 length prefix plus up to 65535 bytes

# A label's first byte: its length (top bits 00), or the top six bits of a
# pointer's 14-bit offset into the message (11), whose low byte follows.
union Label : u8 bits { kind: 2, length: 6 } switch kind {
    0 => bytes[length]          # a label: `length` bytes
    3 => u8                     # a pointer: the offset, `length` << 8 | this byte
}

# A name: its labels as text, the pointer followed (dns_names.py).
extern DomainName: str = "dns_names:domain_name"
    from Label[until it.kind == 3 or it.length == 0]

enum RRType : u16 {
    a = 1, ns = 2, cname = 5, soa = 6, ptr = 12, mx = 15, txt = 16,
    aaaa = 28, opt = 41,
}

frame Message {
    framing length(length) counts after_field stream_only
    header big {
        length: u16             # TCP only: the message size (the bytes after it)
        id: u16
        flags: u16 bits {
            qr: 1, opcode: 4, aa: 1, tc: 1, rd: 1, ra: 1, z: 1, ad: 1, cd: 1, rcode: 4
        }
        qdcount: u16
        ancount: u16
        nscount: u16
        arcount: u16
    }
    body {
        questions: Question[qdcount]
        answers: ResourceRecord[ancount]
        authority: ResourceRecord[nscount]
        additional: ResourceRecord[arcount]
    }
}

struct Question {
    name: DomainName
    qtype: u16
    qclass: u16
}

struct ResourceRecord {
    name: DomainName
    rtype: u16
    record: switch rtype {
        RRType.opt => Opt
        default => Record(rtype)
    }
}

struct Record(rtype: u16) {
    rclass: u16
    ttl: u32
    rdata: bytes[u16] as switch rtype {
        RRType.a => bytes[4]
        RRType.aaaa => bytes[16]
        RRType.ns, RRType.cname, RRType.ptr => DomainName
        RRType.mx => Mx
        RRType.soa => Soa
        RRType.txt => bytes[u8][rest]
        default => bytes[rest]
    }
}

# EDNS(0) OPT (RFC 6891 6.1.2); its owner name is the root.
struct Opt {
    udp_payload_size: u16
    extended_rcode: u8          # the upper 8 bits of the 12-bit RCODE
    version: u8
    flags: u16 bits { dnssec_ok: 1, z: 15 }
    options: bytes[u16] as EdnsOption[rest]
}

struct EdnsOption {
    code: u16
    data: bytes[u16]
}

struct Mx {                     # RFC 1035 3.3.9
    preference: u16
    exchange: DomainName
}

struct Soa {                    # RFC 1035 3.3.13
    mname: DomainName
    rname: DomainName
    serial: u32
    refresh: u32
    retry: u32
    expire: u32
    minimum: u32
}
