"""The PostgreSQL example: a v3 wire-protocol server in front of an in-memory
key/value table (`kvsql.py`), enough for `psql`.

`postgres.proto.dsl` gives the connection its two phases. In `Startup` the
generated handler tells an 8-byte SSLRequest/GSSENCRequest from a
StartupMessage by its first bytes; the StartupMessage moves the connection to
`Session` by itself, where every message is a tag, a length and a payload.
This subclass answers:

- SSLRequest, GSSENCRequest: `N` (no encryption; the client goes on in clear);
- StartupMessage (protocol 3.0): AuthenticationOk, ParameterStatus
  (server_version, client_encoding, ...), BackendKeyData, ReadyForQuery.
  A CancelRequest closes the connection (there is never a query to cancel);
- Query (simple query protocol): for each `;`-separated statement a
  RowDescription and DataRows when it returns rows, then CommandComplete; an
  error answers ErrorResponse with its SQLSTATE and skips the statements after
  it, as PostgreSQL does; then ReadyForQuery;
- the extended query protocol (Parse, Bind, ...): ErrorResponse 0A000, then
  messages are skipped up to Sync, which answers ReadyForQuery;
- Terminate: close;
- bad bytes in either phase (garbage before the startup message, a second
  StartupMessage, a tag no message has, an oversized message): a FATAL
  ErrorResponse with SQLSTATE 08P01 (protocol_violation), then close.
"""

from __future__ import annotations

import itertools
import secrets

from kvsql import SqlError, Table, split_statements
from postgres_codec import (
    Authentication,
    BackendKeyData,
    BackendMessage,
    Column,
    CommandComplete,
    DataRow,
    EncryptionRequest,
    ErrorResponse,
    FieldDescription,
    FrontendMessage,
    Notice,
    ParameterStatus,
    Query,
    ReadyForQuery,
    RowDescription,
    StartupMessage,
)
from postgres_handler import Phase, PostgresHandler

from protogen.errors import ProtocolError
from protogen.runtime import Action, Conn

__all__ = ["PostgresExample"]

PROTOCOL_3_0 = 3 << 16
CANCEL_REQUEST = 80877102
IDLE = ord("I")
PARAMETERS = {
    "server_version": "15.0",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "TimeZone": "UTC",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "is_superuser": "off",
}
_process_ids = itertools.count(1000)


def message(tag: bytes, payload: bytes = b"") -> BackendMessage:
    return BackendMessage(tag=tag[0], payload=payload)


def error_response(sqlstate: str, text: str, severity: str = "ERROR") -> BackendMessage:
    fields = [
        Notice(ord("S"), severity),
        Notice(ord("V"), severity),
        Notice(ord("C"), sqlstate),
        Notice(ord("M"), text),
        Notice(0),
    ]
    return message(b"E", ErrorResponse(fields).encode())


def ready() -> BackendMessage:
    return message(b"Z", ReadyForQuery(IDLE).encode())


class Session:
    """One connection after its StartupMessage."""

    __slots__ = ("user", "skip_to_sync")

    def __init__(self, user: str) -> None:
        self.user = user
        self.skip_to_sync = False  # an extended-protocol error: wait for Sync


class PostgresExample(PostgresHandler):
    """psql's server: one kv table shared by every connection of the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.table = Table()

    # -- Startup ---------------------------------------------------------------------

    def on_encryption_request(
        self, conn: Conn, frame: EncryptionRequest
    ) -> Action | None:
        conn.write(b"N")  # SSL and GSSAPI encryption: not here, go on in clear
        return None

    def on_startup_message(self, conn: Conn, frame: StartupMessage) -> Action | None:
        if frame.version == CANCEL_REQUEST:
            return Action.CLOSE
        if frame.version >> 16 != 3:
            return self._fatal(
                conn,
                "0A000",
                f"unsupported frontend protocol {frame.version >> 16}."
                f"{frame.version & 0xFFFF}: server supports 3.0 to 3.0",
            )
        parameters = parse_parameters(bytes(frame.parameters))
        if parameters is None or "user" not in parameters:
            return self._fatal(conn, "08P01", "invalid startup packet layout")
        conn.context = Session(parameters["user"])
        if frame.version != PROTOCOL_3_0:
            # NegotiateProtocolVersion: the newest minor version we speak, no options.
            self.send(conn, message(b"v", (0).to_bytes(4, "big") + bytes(4)))
        self.send(conn, message(b"R", Authentication(0).encode()))  # AuthenticationOk
        for name, value in PARAMETERS.items():
            self.send(conn, message(b"S", ParameterStatus(name, value).encode()))
        application = parameters.get("application_name", "")
        self.send(
            conn,
            message(b"S", ParameterStatus("application_name", application).encode()),
        )
        self.send(
            conn,
            message(
                b"S",
                ParameterStatus("session_authorization", parameters["user"]).encode(),
            ),
        )
        key = BackendKeyData(next(_process_ids), secrets.randbits(32))
        self.send(conn, message(b"K", key.encode()))
        self.send(conn, ready())
        return None

    # -- Session ---------------------------------------------------------------------

    def on_query(self, conn: Conn, frame: FrontendMessage) -> Action | None:
        try:
            text = Query.decode(frame.payload).text
        except ProtocolError as err:
            return self._fatal(conn, "08P01", f"invalid Query message: {err}")
        try:
            statements = split_statements(text)
        except SqlError as err:
            statements = []
            self.send(conn, error_response(err.sqlstate, err.message))
        else:
            if not statements:
                self.send(conn, message(b"I"))  # EmptyQueryResponse
        for statement in statements:
            try:
                result = self.table.execute(statement)
            except SqlError as err:
                self.send(conn, error_response(err.sqlstate, err.message))
                break  # the statements after an error are not run
            if result.columns is not None:
                fields = [
                    FieldDescription(name, 0, 0, oid, -1 if oid == 25 else 4, -1, 0)
                    for name, oid in result.columns
                ]
                self.send(conn, message(b"T", RowDescription(fields=fields).encode()))
                for row in result.rows or []:
                    columns = [
                        Column(None if value is None else value.encode())
                        for value in row
                    ]
                    self.send(conn, message(b"D", DataRow(columns=columns).encode()))
            self.send(conn, message(b"C", CommandComplete(result.tag).encode()))
        self.send(conn, ready())
        return None

    def on_terminate(self, conn: Conn, frame: FrontendMessage) -> Action | None:
        return Action.CLOSE

    def on_sync(self, conn: Conn, frame: FrontendMessage) -> Action | None:
        session: Session = conn.context
        session.skip_to_sync = False
        self.send(conn, ready())
        return None

    def on_flush(self, conn: Conn, frame: FrontendMessage) -> Action | None:
        return None  # replies are never held back

    def on_password(self, conn: Conn, frame: FrontendMessage) -> Action | None:
        return self._fatal(conn, "08P01", "no password was asked for")

    def on_frontend_message(self, conn: Conn, frame: FrontendMessage) -> Action | None:
        """Parse, Bind, Describe, Execute, Close: the extended query protocol."""
        session: Session = conn.context
        if not session.skip_to_sync:
            session.skip_to_sync = True
            self.send(
                conn,
                error_response("0A000", "the extended query protocol is not supported"),
            )
        return None

    # -- errors ----------------------------------------------------------------------

    def on_protocol_error(self, conn: Conn, err: ProtocolError) -> Action:
        where = "startup packet" if self.phase(conn) is Phase.Startup else "message"
        return self._fatal(conn, "08P01", f"invalid {where}: {err}")

    def _fatal(self, conn: Conn, sqlstate: str, text: str) -> Action:
        self.send(conn, error_response(sqlstate, text, "FATAL"))
        return Action.CLOSE


def parse_parameters(data: bytes) -> dict[str, str] | None:
    """A StartupMessage's name/value C strings, ended by an empty name; None if bad."""
    if data == b"\0":
        return {}
    if not data.endswith(b"\0\0"):
        return None
    parts = data[:-2].split(b"\0")
    if len(parts) % 2:
        return None
    try:
        texts = [part.decode("utf-8") for part in parts]
    except UnicodeDecodeError:
        return None
    return dict(zip(texts[0::2], texts[1::2]))
