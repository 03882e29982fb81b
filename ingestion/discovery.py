"""Find landing files and tell which entity each belongs to.

A file belongs to an entity by its name prefix (`deals_2026-01-02.csv` → deals).
Hidden files (a leading dot, as writers use for files still being written) are
not looked at. Any other file that is not `<entity prefix>*.csv|.jsonl` is still
returned, with the problem named, so it is refused and recorded rather than
ignored without a word.

Only regular files are ever opened. A symbolic link (wherever it points), a
directory, a named pipe, a socket or a device is found by `lstat` — which looks
at the entry itself, never at what a link points to — and, with
`special_entries=True`, returned as `Unread`: the loader records it as refused
without opening it (opening a FIFO blocks; a link may point at /etc/shadow).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ingestion.contracts import ENTITIES, FILE_EXTENSIONS, Entity

# Longest part of a link's target shown in a message.
MAX_TARGET_SHOWN = 200

# A file's timestamps say "unchanged" only once they are this much older than the
# moment we looked: file systems stamp times from a coarse clock (a few ms; a
# second or two on some), so a write just after we read a file can leave size,
# mtime and ctime as they were (git's "racily clean" entries). Also covers a
# landing share whose clock is a little off ours.
SETTLE_NS = 2_000_000_000


class FileSignature(NamedTuple):
    """What `lstat` says of an entry: size and modification / inode-change times (ns).

    Any change to a file — a write, a rename into the folder, a copy that keeps the
    old mtime (`cp -p`, `rsync -a`), `touch` — sets its ctime to the current time,
    which nobody can set back; so an entry whose signature equals a settled one
    recorded earlier is the same, unchanged file.
    """

    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileSignature:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def settled(self, looked_ns: int) -> bool:
        """True when a change made after `looked_ns` (time.time_ns()) must change the ctime."""
        return self.ctime_ns < looked_ns - SETTLE_NS


@dataclass(frozen=True)
class Unread:
    """A landing entry that is not a regular file: never opened, refused as `problem`.

    `ledger_hash` stands in for the content hash in the ledger (its unique key
    with the file name), so the same entry is recorded once; it never comes from
    reading the entry, and is not 64 hex digits, so it cannot equal a file's SHA-256.
    """

    kind: str
    problem: str
    ledger_hash: str


@dataclass(frozen=True)
class LandingFile:
    path: Path
    entity: Entity | None
    problem: str | None = None
    unread: Unread | None = None  # set for an entry that is not a regular file
    # From the listing's lstat (discover); None when the entry was not looked at.
    signature: FileSignature | None = None

    @property
    def name(self) -> str:
        """The file name as storable text (bytes that are not UTF-8 shown as \\xNN)."""
        return _as_text(self.path.name)

    @property
    def path_text(self) -> str:
        return _as_text(str(self.path))

    @property
    def size(self) -> int:
        """Size of the entry itself (a link is not followed); 0 for one that is not read."""
        if self.unread is not None:
            return 0
        return self.path.lstat().st_size

    @property
    def file_format(self) -> str | None:
        suffix = self.path.suffix.lower().lstrip(".")
        return suffix if f".{suffix}" in FILE_EXTENSIONS else None


def _as_text(os_name: str) -> str:
    """A file-system name as valid UTF-8 text: Python keeps undecodable bytes as lone
    surrogates, which PostgreSQL cannot store; they become visible `\\xNN` escapes."""
    return os_name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def classify(path: Path) -> LandingFile:
    """A landing file by its name alone (the entry is not looked at)."""
    lower = path.name.lower()
    entity = next((e for e in ENTITIES if lower.startswith(e.name)), None)
    if entity is None:
        prefixes = ", ".join(f"{e.name}*" for e in ENTITIES)
        return LandingFile(
            path, None, f"file name does not start with an entity prefix ({prefixes})"
        )
    if _as_text(path.name) != path.name:
        return LandingFile(
            path, entity, "file name is not valid UTF-8 (bytes shown as \\xNN); rename the file"
        )
    if not lower.endswith(FILE_EXTENSIONS):
        return LandingFile(
            path,
            entity,
            f"unsupported file type {path.suffix or '(none)'}; expected .csv or .jsonl",
        )
    return LandingFile(path, entity)


_KINDS = (
    (stat.S_ISDIR, "directory", "a directory; folders inside the landing folder are not read"),
    (stat.S_ISFIFO, "fifo", "a named pipe (FIFO), not a regular file; it was not opened"),
    (stat.S_ISSOCK, "socket", "a socket, not a regular file; it was not opened"),
    (stat.S_ISCHR, "character-device", "a character device, not a regular file; it was not opened"),
    (stat.S_ISBLK, "block-device", "a block device, not a regular file; it was not opened"),
)


def describe_unread(path: Path, mode: int) -> Unread:
    """What an entry that is not a regular file is, from its own mode (lstat or an
    O_PATH descriptor's fstat), and the refusal to record. Never opens `path`."""
    if stat.S_ISLNK(mode):
        return _describe_link(path)
    for test, kind, what in _KINDS:
        if test(mode):
            return Unread(kind, f"is {what}", f"unread:{kind}")
    kind = f"mode-{stat.S_IFMT(mode):o}"
    return Unread(
        kind, f"is not a regular file (file type {kind}); it was not opened", f"unread:{kind}"
    )


def _describe_link(path: Path) -> Unread:
    try:
        target = os.readlink(path)
    except OSError:  # replaced or removed meanwhile: still a link when we looked
        target = "?"
    shown = _as_text(target)
    if len(shown) > MAX_TARGET_SHOWN:
        shown = shown[:MAX_TARGET_SHOWN] + "…"
    # realpath resolves names with lstat/readlink only: nothing is opened.
    folder = os.path.realpath(path.parent)
    resolved = os.path.realpath(path)
    inside = os.path.commonpath([folder, resolved]) == folder
    where = (
        "inside the landing folder, where a file loads under its own name"
        if inside
        else "outside the landing folder"
    )
    digest = hashlib.sha256(os.fsencode(target)).hexdigest()
    return Unread(
        "symlink",
        f"is a symbolic link to {shown!r} ({where}); links are never followed,"
        " so nothing was read: put the file itself in the folder",
        f"unread:symlink:{digest}",
    )


def inspect(path: Path, mode: int, signature: FileSignature | None = None) -> LandingFile:
    """`classify` for a regular file (`mode` from lstat); an `Unread` entry otherwise."""
    landing = classify(path)
    if stat.S_ISREG(mode):
        return LandingFile(path, landing.entity, landing.problem, signature=signature)
    unread = describe_unread(path, mode)
    return LandingFile(path, landing.entity, unread.problem, unread, signature)


class Listed(NamedTuple):
    """One non-hidden entry of a landing folder, as listed (lstat only, nothing opened)."""

    name: str  # as storable text (LandingFile.name)
    os_name: str  # as the file system has it
    mode: int
    signature: FileSignature


def list_entries(directory: Path) -> list[Listed]:
    """Every non-hidden entry of `directory` with its own lstat, unsorted, nothing opened.

    One `scandir` and one `lstat` per entry, and no Path built: cheap enough to run
    every few seconds on a folder of many thousand files (the landing sensor does).
    """
    listed = []
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed since the directory was listed
                continue
            signature = FileSignature(st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            listed.append(Listed(_as_text(name), name, st.st_mode, signature))
    return listed


def discover(directory: Path, special_entries: bool = False) -> list[LandingFile]:
    """Landing files in load order: entity order of the contract, then file name.

    Regular files only, unless `special_entries`: then links, folders, pipes,
    sockets and devices are listed too, as `Unread` entries (`ingest_directory`
    records them as refused). Callers that open what they get (a sensor hashing
    new files) keep the default.
    """
    if not directory.is_dir():
        raise NotADirectoryError(f"landing directory {directory} does not exist")
    files = [
        inspect(directory / entry.os_name, entry.mode, entry.signature)
        for entry in list_entries(directory)
        if special_entries or stat.S_ISREG(entry.mode)
    ]
    order = {e.name: i for i, e in enumerate(ENTITIES)}
    return sorted(files, key=lambda f: (order.get(f.entity.name, -1) if f.entity else -1, f.name))
