# http.proto.dsl — HTTP/1.1 requests, as a server sees them.
#
# A request is a head ended by an empty line, then a body whose length the head's
# Content-Length field gives (matched case-insensitively); a head without it has no
# body. max_frame bounds head + body: a longer head, or a Content-Length announcing
# a longer body, is refused (FrameTooLarge -> 413) before it is buffered.
# Chunked transfer coding is not framed here: a chunked request's frame is its
# head alone, and the handler reads the body behind it (request.ChunkedBody).
protocol http
transport tcp
max_frame 64 KiB

frame HttpRequest {
    framing composite head "\r\n\r\n" length_header "Content-Length"
    body { body: bytes[rest] }
}
