# A value array of another shape than DNS names (examples/dns): a 2-byte
# little-endian head whose tag is its low bits, a little-endian integer arm,
# and an end condition over the other bits. The hook is the DNS example's
# (bytes are labels, an int is a pointer), so names still round-trip.
protocol valuearrays
transport tcp
max_frame 65537

union Part : u16 le bits { size: 14, tag: 2 } switch tag {
    1 => bytes[size]
    2 => u16 le                 # the value is `size` << 16 | this integer
}

extern Name: str = "dns_names:domain_name" from Part[until it.tag == 2 or it.size == 0]

frame Names {
    framing length(length) counts after_field
    header { length: u16 }
    body { names: Entry[rest] }
}

struct Entry {
    name: Name
    ttl: u8
}
