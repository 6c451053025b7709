# DNS names as an array of a structure (RFC 1035 4.1.4): labels up to the
# terminating element, the zero-length label or a compression pointer (a union
# on the top two bits of the length byte), one object per label, pointers
# unresolved. examples/dns reads names from a value array instead (docs/dsl.md,
# "Names read from a value array"); bench/dns_labels.py compares the two.
protocol dnslabels
transport tcp
max_frame 65537

frame Names {
    framing length(length) counts after_field
    header { length: u16 }
    body { names: Name[rest] }
}

struct Name {
    labels: Label[until it.kind == 3 or it.length == 0]
}

struct Label {
    head: u8 bits { kind: 2, length: 6 } where kind == 0 or kind == 3
    part: switch kind {
        0 => bytes[length]
        3 => u8                 # the pointer's low byte; `length` is its high bits
    }
}
