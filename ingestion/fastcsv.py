"""The CSV fast path: PostgreSQL parses the file's bytes itself (`COPY ... (FORMAT csv)`).

Parsing CSV row by row in Python costs more than everything else in a load, so a
CSV file is first streamed as raw bytes into `COPY landing FROM STDIN (FORMAT csv)`.
The Python reader (readers.CsvReader) stays the reference: whenever this path
cannot promise the same result, it gives up (`NotForFastPath`, or an error from
PostgreSQL's parser), the caller rolls back to a savepoint and loads the file with
the Python reader, which quarantines each malformed row with its line number.

Given up on, before or while streaming (cheap checks on each 1 MiB chunk):
- a header that is not one plain line (quoted newline, odd quotes), not UTF-8,
  or holds NUL bytes; an empty file;
- NUL bytes anywhere (PostgreSQL text cannot hold them; the reader quarantines
  those rows);
- `\\.` on servers before PostgreSQL 18, where it can end COPY data early;
- a quoted field running on for more than readers.MAX_PARSED_FIELD_CHARS bytes
  (a stray quote: the reader refuses such a file, and PostgreSQL would buffer it);
Given up on when PostgreSQL rejects the data: a row with another number of fields,
a blank line, an unterminated quote, mixed line ends, bytes that are not UTF-8.

Line numbers: when the data holds exactly one line per record, a record's line
is its row number + 1; otherwise (quoted values holding line breaks) the
routing SQL adds the line breaks of the records before it (validation.LineNumbers).
"""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ingestion.contracts import Entity
from ingestion.readers import (
    MAX_PARSED_FIELD_CHARS,
    HashingReader,
    check_header,
    normalize_header,
)
from ingestion.validation import LANDING_TABLE, LineNumbers, landing_ddl

CHUNK_BYTES = 1 << 20
# PostgreSQL errors that mean "this data is not for COPY's CSV parser": rows of
# another width, bad quoting, invalid UTF-8 (class 22), a line too long for it.
PARSER_REJECTED = (
    psycopg.errors.DataError,
    psycopg.errors.ProgramLimitExceeded,
    psycopg.errors.OutOfMemory,
)


class NotForFastPath(Exception):
    """The file must go through the Python reader instead."""


@dataclass
class FastCopy:
    rows: int
    ignored_columns: list[str]
    line_numbers: LineNumbers
    landed_columns: list[str]


def _read_chunk(reader: HashingReader) -> bytes:
    """Up to CHUNK_BYTES; shorter only at the end of the file."""
    parts = []
    size = 0
    while size < CHUNK_BYTES:
        part = reader.read(CHUNK_BYTES - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def split_header(first: bytes) -> tuple[list[str], int]:
    """The header's names (normalized) and the offset where the data starts."""
    start = len(codecs.BOM_UTF8) if first.startswith(codecs.BOM_UTF8) else 0
    end = first.find(b"\n", start)
    if end < 0:
        raise NotForFastPath("no complete header line in the first chunk")
    line = first[start:end].removesuffix(b"\r")
    if b"\r" in line or b"\x00" in line or line.count(b'"') % 2:
        raise NotForFastPath("header is not one plain line")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise NotForFastPath("header is not UTF-8") from None
    return normalize_header(next(csv.reader([text]))), end + 1


# Extra columns become landing-table columns; far below PostgreSQL's 1,600.
MAX_FAST_COLUMNS = 500


class _Scan:
    """Running checks and counts over the data bytes, chunk by chunk."""

    def __init__(self, check_end_marker: bool) -> None:
        self.check_end_marker = check_end_marker
        self.lf = self.cr = self.crlf = 0
        self.last = b"\n"  # the data starts at the beginning of a line
        self.in_quote = False
        self.quoted_run = 0
        self.total = 0

    def feed(self, data: bytes) -> None:
        if b"\x00" in data:
            raise NotForFastPath("NUL bytes")
        if self.check_end_marker and b"\\." in self.last + data:
            raise NotForFastPath("backslash-dot, an end-of-data marker before PostgreSQL 18")
        self.lf += data.count(b"\n")
        self.cr += data.count(b"\r")
        self.crlf += data.count(b"\r\n") + (self.last == b"\r" and data[:1] == b"\n")
        quotes = data.count(b'"')
        if quotes:
            if quotes % 2:
                self.in_quote = not self.in_quote
            self.quoted_run = len(data) - data.rindex(b'"') - 1 if self.in_quote else 0
        elif self.in_quote:
            self.quoted_run += len(data)
        if self.quoted_run > MAX_PARSED_FIELD_CHARS:
            raise NotForFastPath("a quoted field longer than the reader accepts")
        self.total += len(data)
        self.last = data[-1:]

    def lines(self) -> int:
        """Lines of data, as Python's csv reader counts them (CR, LF, CRLF)."""
        ends = self.lf + self.cr - self.crlf
        return ends + (self.total > 0 and self.last not in (b"\n", b"\r"))


def copy_csv(
    conn: psycopg.Connection, entity: Entity, file_name: str, reader: HashingReader
) -> FastCopy:
    """Create the landing table and stream the file into it through COPY's CSV parser.

    Raises NotForFastPath or one of PARSER_REJECTED when the Python reader must
    take over (the caller holds a savepoint), FileRefused for a header that
    refuses the file whichever parser reads it.
    """
    if conn.info.encoding != "utf-8":
        raise NotForFastPath("the connection's client encoding is not UTF-8")
    first = _read_chunk(reader)
    header, offset = split_header(first)
    ignored = check_header(entity, header, file_name)
    known = set(entity.field_names)
    extra = [f"_extra_{i}" for i, name in enumerate(header) if name not in known]
    if len(header) > MAX_FAST_COLUMNS:  # a table holds at most 1,600 columns
        raise NotForFastPath(f"{len(header)} columns")
    extra_names = iter(extra)
    columns = [name if name in known else next(extra_names) for name in header]
    conn.execute(landing_ddl(entity, extra))
    column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
    copy_sql = sql.SQL("copy {} ({}) from stdin (format csv, force_not_null ({}))").format(
        sql.Identifier(LANDING_TABLE), column_list, column_list
    )
    scan = _Scan(check_end_marker=conn.info.server_version < 180000)
    cursor = conn.cursor()
    with cursor.copy(copy_sql) as copy:
        data = first[offset:]
        while data:
            scan.feed(data)
            copy.write(data)
            data = _read_chunk(reader)
    rows = cursor.rowcount
    one_line_each = scan.lines() == rows
    return FastCopy(
        rows=rows,
        ignored_columns=ignored,
        line_numbers=LineNumbers.ORDINAL if one_line_each else LineNumbers.COUNTED,
        landed_columns=columns,
    )
