# postgres.proto.dsl — the PostgreSQL v3 wire protocol, server side (the
# "Frontend/Backend Protocol" chapter of the PostgreSQL documentation).
#
# A connection starts untyped: an 8-byte SSLRequest or GSSENCRequest (answered
# with one byte, 'N' for "no encryption here"), then a StartupMessage, a length
# and a protocol version followed by name/value C strings. From then on every
# message is typed: a tag byte, a length that counts itself but not the tag,
# and the tag's payload, described by the structures below.
protocol postgres
transport tcp
max_frame 1 MiB
server decodes FrontendMessage encodes BackendMessage

start phase Startup {
    "\x00\x00\x00\x08\x04\xd2\x16" => EncryptionRequest    # then StartupMessage
    default => StartupMessage then Session
}
phase Session {                     # told apart by the tag: any other byte is an error
    "B", "C", "D", "E", "H", "P", "Q", "S", "X", "p" => FrontendMessage
}

# -- the startup phase ------------------------------------------------------------

enum EncryptionCode : u32 { ssl = 80877103, gssenc = 80877104 }

frame EncryptionRequest {
    framing fixed
    header { length: u32 = 8  code: EncryptionCode }
    dispatch on code
}

frame StartupMessage {
    framing length(length) counts frame
    max_frame 10000 B                    # the server's own limit on startup packets
    header { length: u32  version: u32 }
    body { parameters: bytes[rest] }     # name "\0" value "\0" ... "\0"
}

# -- typed messages ---------------------------------------------------------------

enum FrontendTag : u8 {
    bind = 0x42, close = 0x43, describe = 0x44, execute = 0x45, flush = 0x48,
    parse = 0x50, query = 0x51, sync = 0x53, terminate = 0x58, password = 0x70,
}

frame FrontendMessage {
    framing length(length) counts after_field adjust -4
    header { tag: FrontendTag  length: u32 }
    body { payload: bytes[rest] }
    dispatch on tag
}

frame BackendMessage {
    framing length(length) counts after_field adjust -4
    header { tag: u8  length: u32 }
    body { payload: bytes[rest] }
}

# Frontend payloads.
struct Query { text: string[until "\0"] }

# Backend payloads (the tag each goes with is the handler's).
struct Authentication { code: u32 }                             # 'R', 0: AuthenticationOk
struct ParameterStatus { name: string[until "\0"]  value: string[until "\0"] }   # 'S'
struct BackendKeyData { process_id: u32  secret_key: u32 }      # 'K'
struct ReadyForQuery { status: u8 }                             # 'Z': 'I' idle
struct FieldDescription {
    name: string[until "\0"]
    table_oid: u32
    column: u16
    type_oid: u32
    type_size: i16
    type_modifier: i32
    format: u16                                                 # 0: text
}
struct RowDescription { count: u16  fields: FieldDescription[count] }   # 'T'
struct Column { value: bytes[i32] or null }                     # -1: NULL
struct DataRow { count: u16  columns: Column[count] }           # 'D'
struct CommandComplete { command_tag: string[until "\0"] }      # 'C'
struct Notice { code: u8  value: string[until "\0"] if code != 0 }
struct ErrorResponse { fields: Notice[until it.code == 0] }     # 'E' (and 'N')
