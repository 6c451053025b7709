# upgrade.proto.dsl — HTTP/1.1 requests until one asks for a WebSocket.
#
# The handler answers plain requests itself; a GET /ws with the WebSocket
# handshake is answered 101 and the connection is handed over to the WebSocket
# example's handler (examples/websocket), which decodes frames from the byte
# right after the request on.
protocol upgrade
transport tcp
max_frame 64 KiB

start phase Requests {
    Request
}

frame Request {
    framing composite head "\r\n\r\n" length_header "Content-Length"
}
