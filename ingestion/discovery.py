"""Find landing files and tell which entity each belongs to (SPEC §2).

A file belongs to an entity by its name prefix (`deals_2026-01-02.csv` → deals).
Hidden files (a leading dot, as writers use for files still being written) are
not looked at. Any other file that is not `<entity prefix>*.csv|.jsonl` is still
returned, with the problem named, so it is refused and recorded rather than
ignored without a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ingestion.contracts import ENTITIES, FILE_EXTENSIONS, Entity


@dataclass(frozen=True)
class LandingFile:
    path: Path
    entity: Entity | None
    problem: str | None = None

    @property
    def name(self) -> str:
        """The file name as storable text (bytes that are not UTF-8 shown as \\xNN)."""
        return _as_text(self.path.name)

    @property
    def path_text(self) -> str:
        return _as_text(str(self.path))

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def file_format(self) -> str | None:
        suffix = self.path.suffix.lower().lstrip(".")
        return suffix if f".{suffix}" in FILE_EXTENSIONS else None


def _as_text(os_name: str) -> str:
    """A file-system name as valid UTF-8 text: Python keeps undecodable bytes as lone
    surrogates, which PostgreSQL cannot store; they become visible `\\xNN` escapes."""
    return os_name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def classify(path: Path) -> LandingFile:
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


def discover(directory: Path) -> list[LandingFile]:
    """Landing files in load order: entity order of the contract, then file name."""
    if not directory.is_dir():
        raise NotADirectoryError(f"landing directory {directory} does not exist")
    files = [classify(p) for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")]
    order = {e.name: i for i, e in enumerate(ENTITIES)}
    return sorted(files, key=lambda f: (order.get(f.entity.name, -1) if f.entity else -1, f.name))
