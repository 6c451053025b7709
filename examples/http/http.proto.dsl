# http.proto.dsl — HTTP/1.1 requests, as a server sees them.
#
# A request is a head ended by an empty line, then a body whose length the head's
# Content-Length field gives (matched case-insensitively); a head without it has no
# body. max_frame bounds head + body: a longer head, or a Content-Length announcing
# a longer body, is refused (FrameTooLarge -> 413) before it is buffered.
# Chunked transfer coding is not framed here: a chunked request's frame is its
# head alone, and the handler reads the body behind it (request.ChunkedBody).
#
# A connection has one phase of requests; the handler answers `GET /ws` with a
# WebSocket handshake `101` and hands the connection over to the WebSocket
# example's handler (examples/websocket), which decodes the bytes after the
# request as WebSocket frames.
protocol http
transport tcp
max_frame 64 KiB

start phase Requests {
    HttpRequest
}

frame HttpRequest {
    framing composite head "\r\n\r\n" length_header "Content-Length"
    body { body: bytes[rest] }
}
