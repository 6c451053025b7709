# dns.proto.dsl — DNS messages (RFC 1035, EDNS(0) RFC 6891) over TCP and UDP.
#
# Over TCP every message follows a 2-byte length (RFC 1035 4.2.2); a datagram is
# one message without it (`stream_only`). Names are compressed (4.1.4): the
# plug-in type DomainName (examples/dns/dns_names.py) follows and writes pointers. A resource
# record's RDATA is chosen by its type; an OPT pseudo-record (type 41) reuses the
# class and TTL fields for the UDP payload size, extended RCODE, version and flags.
protocol dns
transport tcp, udp
max_frame 65537                 # the u16 length prefix plus up to 65535 bytes

extern DomainName: str = "dns_names:domain_name"

enum RRType : u16 {
    a = 1, ns = 2, cname = 5, soa = 6, ptr = 12, mx = 15, txt = 16,
    aaaa = 28, srv = 33, opt = 41,
}

frame Message {
    framing length(length) counts after_field stream_only
    header {
        length: u16             # TCP only: the size of the message after it
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
        RRType.srv => Srv
        RRType.txt => bytes[u8][rest]
        default => bytes[rest]
    }
}

# EDNS(0) OPT (RFC 6891 section 6.1.2); its owner name is the root.
struct Opt {
    udp_payload_size: u16
    extended_rcode: u8
    version: u8
    flags: u16 bits { dnssec_ok: 1, z: 15 }
    options: bytes[u16] as EdnsOption[rest]
}

struct EdnsOption {
    code: u16
    data: bytes[u16]
}

struct Mx {
    preference: u16
    exchange: DomainName
}

struct Soa {
    mname: DomainName
    rname: DomainName
    serial: u32
    refresh: u32
    retry: u32
    expire: u32
    minimum: u32
}

struct Srv {
    priority: u16
    weight: u16
    port: u16
    target: DomainName
}
