# phased.proto.dsl — every kind of phase: a fixed preamble moving on by itself,
# frames chosen by one first byte with a delimited default, frames chosen by
# first bytes of different lengths with no default, dispatch inside a phase.
protocol phased
server decodes Command

enum Kind : u8 { hello = 1, binary = 2, bye = 3 }

start phase Greeting {
    Hello then Commands             # the preamble, then commands
}
phase Commands {
    "*" => Counted,
    "!", "?" => Control             # its handler may switch to Binary
    default => Command
}
phase Binary {
    "\x01\x02" => Packet
    "\x03" => Control then Commands
}

frame Hello { framing fixed header { magic: u32 = 0x48454C4F  version: u8 } }
frame Command { framing delimited "\n" max_frame 4 KiB body { line: bytes[rest] } }
frame Counted { framing length(length) header { mark: u8 = 0x2A  length: u16 } }
frame Control {
    framing fixed
    header { mark: u8 in {0x21, 0x3F, 0x03}  kind: Kind }
    dispatch on kind
}
frame Packet { framing length(length) header { magic: u16 = 0x0102  length: u8 } }
