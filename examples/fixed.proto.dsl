# Fixed 16-byte sensor readings:
#   magic "SR" | version | kind | sensor id | delta (signed) | value (float)
protocol sensors
transport tcp, udp

enum Kind : u8 {
    temperature = 1
    humidity = 2
    pressure = 3
}

frame Reading {
    framing fixed 16
    header big {
        magic: u16 = 0x5352         # "SR"
        version: u8 in {1, 2}
        kind: Kind
        sensor_id: u32 le           # this field is little-endian on the wire
        delta: i32
        value: f32
    }
    dispatch on kind                # on_temperature, on_humidity, on_pressure
}
