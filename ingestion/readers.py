"""Streaming readers: turn a CSV or JSONL file into landing rows, in bounded memory.

A reader yields one tuple per record: (line_no, parse_error, raw_text, *fields),
fields in the entity's declared order, text or None. Rows that are not valid
CSV/JSON still yield a tuple — with `parse_error` set and the text as read in
`raw_text` — so they reach the quarantine instead of vanishing. Problems that
make the whole file unusable raise `FileRefused`.

Landing files are opened only by `open_regular`: never through a symbolic link,
never a pipe, socket or device.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO

from ingestion.contracts import MAX_FIELD_CHARS, Entity

# csv refuses fields over 128 KiB by default. Values up to this size reach the
# validation step (which quarantines those over MAX_FIELD_CHARS with their length);
# a larger one — typically a stray quote swallowing the rest of the file — refuses
# the file, so memory stays bounded.
MAX_PARSED_FIELD_CHARS = 16 * MAX_FIELD_CHARS
csv.field_size_limit(MAX_PARSED_FIELD_CHARS)

LandingRow = tuple[object, ...]


class FileRefused(Exception):
    """The file as a whole cannot be loaded; no row of it is kept."""


class HashingReader(io.RawIOBase):
    """Reads a binary file while hashing exactly the bytes that were read."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self.digest.update(memoryview(buffer)[:n])
            self.bytes_read += n
        return n or 0


class NotRegularFile(OSError):
    """The path is not a regular file (`mode` is the entry's own); it was not opened for reading."""

    def __init__(self, path: Path, mode: int) -> None:
        super().__init__(f"{path} is not a regular file")
        self.path = path
        self.mode = mode


# O_PATH (Linux) opens a name without opening the file: no read access, no side
# effect of a device's open, no blocking on a FIFO.
_O_PATH = getattr(os, "O_PATH", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def open_regular(path: Path) -> io.FileIO:
    """Open `path` for reading if, at the moment of opening, it is a regular file.

    Checked on the opened descriptor, not on the name (a file swapped for a link
    or a FIFO between a check and the open cannot slip through): the name is
    opened with O_NOFOLLOW — a final symbolic link is not followed — and O_PATH,
    fstat says what it is, and only a regular file is then opened for reading,
    through /proc/self/fd, which reaches that very inode. Without O_PATH (not
    Linux), O_NONBLOCK keeps a FIFO's open from blocking before fstat refuses it.
    Raises NotRegularFile for anything else.
    """
    if _O_PATH:
        handle = os.open(path, _O_PATH | _O_NOFOLLOW | os.O_CLOEXEC)
        try:
            mode = os.fstat(handle).st_mode
            if not stat.S_ISREG(mode):
                raise NotRegularFile(path, mode)
            try:
                fd = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # no /proc: open by name, checked again below
                fd = _open_nofollow(path)
        finally:
            os.close(handle)
    else:
        fd = _open_nofollow(path)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(path, mode)
    return io.FileIO(fd, "rb", closefd=True)


def _open_nofollow(path: Path) -> int:
    flags = os.O_RDONLY | _O_NOFOLLOW | os.O_CLOEXEC
    flags |= getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        return os.open(path, flags)
    except OSError as exc:
        if not os.path.islink(path):
            raise
        raise NotRegularFile(path, os.lstat(path).st_mode) from exc


def sha256_of(handle: BinaryIO) -> str:
    """SHA-256 of the whole file behind `handle`, read from its start; leaves it at the end."""
    handle.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a regular file's content (NotRegularFile for anything else)."""
    with open_regular(path) as handle:
        return sha256_of(handle)


def open_text(raw: BinaryIO) -> io.TextIOWrapper:
    """UTF-8 (a BOM is allowed), newlines kept as-is for the csv module."""
    return io.TextIOWrapper(
        io.BufferedReader(raw, buffer_size=1 << 20),  # type: ignore[arg-type]
        encoding="utf-8-sig",
        errors="strict",
        newline="",
    )


class _NulFilter:
    """Passes lines through, replacing NUL bytes (which PostgreSQL text cannot hold)
    with the visible text `\\x00` and remembering on which lines that happened."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = lines
        self.line = 0
        self.nul_lines: list[int] = []

    def __iter__(self) -> Iterator[str]:
        for line in self._lines:
            self.line += 1
            if "\x00" in line:
                self.nul_lines.append(self.line)
                line = line.replace("\x00", "\\x00")
            yield line


def _storable(text: str) -> str:
    """`text` as PostgreSQL text can hold it: NUL shown as `\\x00`, lone surrogates escaped."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def normalize_header(names: list[str]) -> list[str]:
    return [name.strip().lower() for name in names]


def check_header(entity: Entity, header: list[str], file_name: str) -> list[str]:
    """Refuse a header with duplicates or missing required columns; return ignored ones."""
    seen: set[str] = set()
    duplicates = sorted({n for n in header if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if duplicates:
        raise FileRefused(f"{file_name}: header repeats column(s) {', '.join(duplicates)}")
    missing = [name for name in entity.required_names if name not in header]
    if missing:
        raise FileRefused(
            f"{file_name}: header lacks required column(s) {', '.join(missing)}"
            f" (expected columns for {entity.name}: {', '.join(entity.field_names)})"
        )
    known = set(entity.field_names)
    return [name for name in header if name not in known]


class CsvReader:
    """Parses RFC 4180 CSV with a header row; column order free, extra columns ignored."""

    def __init__(self, entity: Entity, text: io.TextIOWrapper, file_name: str) -> None:
        self.entity = entity
        self.file_name = file_name
        self._lines = _NulFilter(text)
        self._reader = csv.reader(self._lines, strict=False)
        try:
            header = next(self._reader)
        except StopIteration:
            raise FileRefused(f"{file_name}: file is empty (no header row)") from None
        if self._lines.nul_lines:
            raise FileRefused(f"{file_name}: header row contains NUL bytes")
        self.header = normalize_header(header)
        self.ignored_columns = check_header(entity, self.header, file_name)
        self.present_fields = [n for n in entity.field_names if n in self.header]
        self._getter = itemgetter(*(self.header.index(n) for n in self.present_fields))

    def __iter__(self) -> Iterator[LandingRow]:
        width = len(self.header)
        getter = self._getter
        single = len(self.present_fields) == 1
        lines = self._lines
        nul_lines = lines.nul_lines
        reader = self._reader
        end = reader.line_num
        blank = (None,) * len(self.present_fields)
        try:
            for row in reader:
                start, end = end + 1, reader.line_num
                if not row:  # a blank line is not a record
                    continue
                if len(row) != width:
                    yield (
                        start,
                        f"row has {len(row)} fields but the header has {width}"
                        " (unbalanced quotes or a stray delimiter?)",
                        json.dumps(row, ensure_ascii=False),
                        *blank,
                    )
                elif nul_lines and nul_lines[-1] >= start:
                    yield (
                        start,
                        "row contains NUL bytes (shown as \\x00), which text fields cannot hold",
                        json.dumps(row, ensure_ascii=False),
                        *blank,
                    )
                elif single:
                    yield (start, None, None, getter(row))
                else:
                    yield (start, None, None, *getter(row))
        except csv.Error as exc:  # only for damage the lenient parser cannot step over
            raise FileRefused(
                f"{self.file_name}: line {lines.line}: not valid CSV: {exc}"
            ) from None


class JsonlReader:
    """One JSON object per line; keys are the field names, extra keys ignored."""

    def __init__(self, entity: Entity, text: io.TextIOWrapper, file_name: str) -> None:
        self.entity = entity
        self.file_name = file_name
        self._text = text
        self.present_fields = list(entity.field_names)
        self._ignored: dict[str, None] = {}

    @property
    def ignored_columns(self) -> list[str]:
        return list(self._ignored)

    def _row(self, line_no: int, line: str) -> LandingRow:
        fields = self.present_fields
        blank = (None,) * len(fields)
        try:
            obj = json.loads(line, parse_float=str, parse_int=str, parse_constant=str)
        except RecursionError:  # raised before the parser reaches a NUL byte further on
            return (
                line_no,
                "line is not valid JSON: nested too deeply",
                line.replace("\x00", "\\x00"),
                *blank,
            )
        except ValueError as exc:
            return (
                line_no,
                f"line is not valid JSON: {exc}",
                line.replace("\x00", "\\x00"),
                *blank,
            )
        if not isinstance(obj, dict):
            return (line_no, f"expected a JSON object, got {type(obj).__name__}", line, *blank)
        extra = obj.keys() - set(fields)
        if extra:  # a key may hold \u0000 or a lone surrogate, which the ledger cannot store
            self._ignored.update(dict.fromkeys(sorted(map(_storable, extra))))
        values: list[str | None] = []
        for name in fields:
            value = obj.get(name)
            if value is None or isinstance(value, str):
                if value is not None and "\x00" in value:
                    return (line_no, f"{name}: value contains a NUL character", line, *blank)
                if value is not None and not value.isascii():
                    try:  # a \ud800 escape decodes to a lone surrogate, which is not UTF-8
                        value.encode("utf-8")
                    except UnicodeEncodeError:
                        return (
                            line_no,
                            f"{name}: value holds an invalid \\u escape (lone surrogate)",
                            line,
                            *blank,
                        )
                values.append(value)
            else:
                kind = "true/false" if isinstance(value, bool) else type(value).__name__
                return (
                    line_no,
                    f"{name}: expected a string or number, got a JSON {kind}",
                    line,
                    *blank,
                )
        return (line_no, None, None, *values)

    def __iter__(self) -> Iterator[LandingRow]:
        for line_no, line in enumerate(self._text, 1):
            stripped = line.strip()
            if stripped:
                yield self._row(line_no, stripped)


def describe_decode_error(raw: BinaryIO, file_name: str) -> str:
    """Why a file is not UTF-8, naming the first bad line and bytes.

    Text is decoded in chunks, so the error itself does not know its line; this
    rescans the file (only on that error path) line by line in binary, from the
    start of `raw` (the descriptor the load read, never the name again).
    """
    offset = 0
    raw.seek(0)
    # Through a HashingReader: closing the buffer then does not close `raw`.
    lines = io.BufferedReader(HashingReader(raw), 1 << 20)
    for line_no, line in enumerate(lines, 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = line[exc.start : exc.start + 4]
            return (
                f"{file_name}: cannot be decoded as UTF-8 at line {line_no}"
                f" (byte offset {offset + exc.start}, bytes {bad!r}: {exc.reason});"
                " re-export the file as UTF-8"
            )
        offset += len(line)
    return f"{file_name}: cannot be decoded as UTF-8; re-export the file as UTF-8"


def make_reader(entity: Entity, text: io.TextIOWrapper, file_name: str) -> CsvReader | JsonlReader:
    if file_name.lower().endswith(".jsonl"):
        return JsonlReader(entity, text, file_name)
    return CsvReader(entity, text, file_name)
