# memcached.proto.dsl — the memcached binary protocol (requests in, responses out).
#
# Every packet is a 24-byte big-endian header, then extras, key and value; the header
# says how long the extras and the key are, and total_body counts all three. A
# request carries the vbucket id where a response carries its status.
# Reference: https://github.com/memcached/memcached/wiki/BinaryProtocolRevamped
protocol memcached
transport tcp
max_frame 2 MiB                 # a default: the handler derives its own from the item size limit (-I)
server decodes Request encodes Response

enum Opcode : u8 {
    get = 0x00, set = 0x01, add = 0x02, replace = 0x03, delete = 0x04,
    increment = 0x05, decrement = 0x06, quit = 0x07, flush = 0x08,
    getq = 0x09, noop = 0x0a, version = 0x0b, getk = 0x0c, getkq = 0x0d,
    append = 0x0e, prepend = 0x0f, stat = 0x10, setq = 0x11, addq = 0x12,
    replaceq = 0x13, deleteq = 0x14, incrementq = 0x15, decrementq = 0x16,
    quitq = 0x17, flushq = 0x18, appendq = 0x19, prependq = 0x1a,
    verbosity = 0x1b, touch = 0x1c, gat = 0x1d, gatq = 0x1e,
    gatk = 0x23, gatkq = 0x24
}

frame Request {
    framing length(total_body)
    header {
        magic: u8 = 0x80
        opcode: Opcode
        key_length: u16
        extras_length: u8
        data_type: u8
        vbucket: u16
        total_body: u32
        opaque: u32
        cas: u64
    }
    body {
        # The extras each command takes; extras of another length are a
        # MalformedFrame ("... bytes left over in its region"), answered EINVAL.
        extras: bytes[extras_length] as switch opcode {
            set, setq, add, addq, replace, replaceq => StorageExtras
            increment, incrementq, decrement, decrementq => ArithmeticExtras
            touch, gat, gatq, gatk, gatkq => Expiration
            flush, flushq => FlushExtras
            verbosity => Verbosity
            get, getq, getk, getkq, delete, deleteq, append, appendq, prepend,
                prependq, noop, version, quit, quitq, stat => NoExtras
            default => bytes[rest]          # an opcode not in the enum: not checked
        }
        key: bytes[key_length]
        value: bytes[rest]
    }
    dispatch on opcode allow_unknown    # an opcode not in the enum: on_unknown_opcode
}

# SET, ADD, REPLACE (and their quiet forms): the item's flags and expiry.
struct StorageExtras {
    flags: u32
    expiration: u32
}

# INCREMENT, DECREMENT: the amount, the value stored for a missing key (unless
# expiration is 0xffffffff: then a miss is NOT_FOUND), and its expiry.
struct ArithmeticExtras {
    delta: u64
    initial: u64
    expiration: u32
}

# TOUCH, GAT, GATK (and quiet forms): the new expiry.
struct Expiration {
    expiration: u32
}

# FLUSH: an optional delay in seconds, no extras meaning now. (Zero or one u32:
# a field present by the region's own size would need that size before it.)
struct FlushExtras {
    delay: u32[rest] where len(delay) <= 1
}

struct Verbosity {
    level: u32
}

struct NoExtras {}

frame Response {
    framing length(total_body)
    header {
        magic: u8 = 0x81
        opcode: u8              # echoes the request's, known to the enum or not
        key_length: u16
        extras_length: u8
        data_type: u8 = 0
        status: u16
        total_body: u32
        opaque: u32
        cas: u64
    }
    body {
        extras: bytes[extras_length]
        key: bytes[key_length]
        value: bytes[rest]
    }
}
