"""The SQL the PostgreSQL example understands, over one key/value table.

    CREATE TABLE kv (k text PRIMARY KEY, v text)   -- exists from the start
    SELECT 1 | SELECT 'text' | SELECT version()
    SELECT v | k, v | * FROM kv [WHERE k = 'key']
    INSERT INTO kv VALUES ('k', 'v') [, ('k2', 'v2') ...]
    UPDATE kv SET v = 'new' [WHERE k = 'key']
    DELETE FROM kv [WHERE k = 'key']

A query string may hold several statements separated by `;`. Anything else is
an `SqlError` with the SQLSTATE PostgreSQL would give. No I/O here: the wire
protocol is the handler's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Result", "SqlError", "Table", "VERSION", "split_statements"]

VERSION = "PostgreSQL 15.0 (protogen example: an in-memory kv table)"
INT4, TEXT = 23, 25  # type OIDs (pg_type)

# One token at a time; each alternative starts with a different character class,
# so the scan is linear (no backtracking on untrusted text).
_TOKEN = re.compile(
    r"""\s+|--[^\n]*
    |(?P<string>'(?:[^']|'')*')
    |(?P<number>[0-9]+)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<punct>[(),;*=])""",
    re.VERBOSE,
)


class SqlError(Exception):
    """A statement PostgreSQL would refuse: SQLSTATE and message."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


@dataclass(frozen=True)
class Token:
    kind: str  # string, number, word, punct
    text: str  # words upper-cased, strings unquoted

    def __str__(self) -> str:
        return self.text


@dataclass
class Result:
    """What a statement returns: rows (with their columns) and the command tag."""

    tag: str
    columns: list[tuple[str, int]] | None = None  # (name, type OID); None: no rows
    rows: list[list[str | None]] | None = None


def tokenize(text: str) -> list[Token]:
    tokens = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos] == "'":
                raise SqlError(
                    "42601",
                    f'unterminated quoted string at or near "{text[pos:pos + 10]}"',
                )
            raise SqlError("42601", f'syntax error at or near "{text[pos]}"')
        pos = match.end()
        kind = match.lastgroup
        if kind == "string":
            tokens.append(Token(kind, match.group()[1:-1].replace("''", "'")))
        elif kind == "word":
            tokens.append(Token(kind, match.group().upper()))
        elif kind is not None:
            tokens.append(Token(kind, match.group()))
    return tokens


def split_statements(text: str) -> list[list[Token]]:
    """The non-empty statements of a query string, as token lists."""
    statements: list[list[Token]] = [[]]
    for token in tokenize(text):
        if token.kind == "punct" and token.text == ";":
            statements.append([])
        else:
            statements[-1].append(token)
    return [statement for statement in statements if statement]


class _Parser:
    """Reads one statement's tokens left to right."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise SqlError("42601", "syntax error at end of input")
        self.pos += 1
        return token

    def expect(self, *texts: str) -> None:
        for text in texts:
            token = self.take()
            if token.kind not in ("word", "punct") or token.text != text:
                raise SqlError("42601", f'syntax error at or near "{token}"')

    def accept(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token.kind in ("word", "punct") and token.text == text:
            self.pos += 1
            return True
        return False

    def string(self) -> str:
        token = self.take()
        if token.kind != "string":
            raise SqlError("42601", f'syntax error at or near "{token}"')
        return token.text

    def end(self) -> None:
        token = self.peek()
        if token is not None:
            raise SqlError("42601", f'syntax error at or near "{token}"')

    def table(self) -> None:
        token = self.take()
        if token.kind != "word":
            raise SqlError("42601", f'syntax error at or near "{token}"')
        if token.text != "KV":
            raise SqlError("42P01", f'relation "{token.text.lower()}" does not exist')

    def where_key(self) -> str | None:
        """`WHERE k = 'key'`, or None without a WHERE."""
        if not self.accept("WHERE"):
            return None
        column = self.take()
        if column.text not in ("K", "V") or column.kind != "word":
            raise SqlError("42703", f'column "{column.text.lower()}" does not exist')
        if column.text != "K":
            raise SqlError("0A000", "only WHERE k = '...' is supported")
        self.expect("=")
        return self.string()


class Table:
    """kv (k text PRIMARY KEY, v text), in insertion order."""

    def __init__(self) -> None:
        self.rows: dict[str, str] = {}

    def execute(self, tokens: list[Token]) -> Result:
        parser = _Parser(tokens)
        verb = parser.take()
        if verb.kind == "word" and verb.text == "SELECT":
            return self._select(parser)
        if verb.kind == "word" and verb.text == "INSERT":
            return self._insert(parser)
        if verb.kind == "word" and verb.text == "UPDATE":
            return self._update(parser)
        if verb.kind == "word" and verb.text == "DELETE":
            return self._delete(parser)
        raise SqlError("42601", f'syntax error at or near "{verb}"')

    def _select(self, parser: _Parser) -> Result:
        first = parser.take()
        if first.kind == "number" and parser.peek() is None:
            return Result("SELECT 1", [("?column?", INT4)], [[str(int(first.text))]])
        if first.kind == "string" and parser.peek() is None:
            return Result("SELECT 1", [("?column?", TEXT)], [[first.text]])
        if first.kind == "word" and first.text == "VERSION" and parser.accept("("):
            parser.expect(")")
            parser.end()
            return Result("SELECT 1", [("version", TEXT)], [[VERSION]])
        names = self._columns(parser, first)
        parser.expect("FROM")
        parser.table()
        key = parser.where_key()
        parser.end()
        items = (
            self.rows.items()
            if key is None
            else ([(key, self.rows[key])] if key in self.rows else [])
        )
        rows = [[k if name == "k" else v for name in names] for k, v in items]
        return Result(f"SELECT {len(rows)}", [(name, TEXT) for name in names], rows)

    @staticmethod
    def _columns(parser: _Parser, first: Token) -> list[str]:
        if first.kind == "punct" and first.text == "*":
            return ["k", "v"]
        names = []
        token = first
        while True:
            if token.kind != "word":
                raise SqlError("42601", f'syntax error at or near "{token}"')
            if token.text not in ("K", "V"):
                raise SqlError("42703", f'column "{token.text.lower()}" does not exist')
            names.append(token.text.lower())
            if not parser.accept(","):
                return names
            token = parser.take()

    def _insert(self, parser: _Parser) -> Result:
        parser.expect("INTO")
        parser.table()
        parser.expect("VALUES")
        new: dict[str, str] = {}
        while True:
            parser.expect("(")
            key = parser.string()
            parser.expect(",")
            value = parser.string()
            parser.expect(")")
            if key in self.rows or key in new:
                raise SqlError(
                    "23505", 'duplicate key value violates unique constraint "kv_pkey"'
                )
            new[key] = value
            if not parser.accept(","):
                break
        parser.end()
        self.rows.update(new)  # all rows or none, as one statement
        return Result(f"INSERT 0 {len(new)}")

    def _update(self, parser: _Parser) -> Result:
        parser.table()
        parser.expect("SET", "V", "=")
        value = parser.string()
        key = parser.where_key()
        parser.end()
        keys = list(self.rows) if key is None else [key] if key in self.rows else []
        for k in keys:
            self.rows[k] = value
        return Result(f"UPDATE {len(keys)}")

    def _delete(self, parser: _Parser) -> Result:
        parser.expect("FROM")
        parser.table()
        key = parser.where_key()
        parser.end()
        if key is None:
            count = len(self.rows)
            self.rows.clear()
        else:
            count = 1 if self.rows.pop(key, None) is not None else 0
        return Result(f"DELETE {count}")
