"""File output (CSV / JSON Lines, written atomically) and the on-disk spool."""

from __future__ import annotations

import csv
import json
import os
import pickle
from collections.abc import Iterable
from pathlib import Path

# Spooled items are flushed to disk once this many are buffered in memory.
SPOOL_FLUSH_ITEMS = 200_000


def write_rows(
    path: Path, fields: tuple[str, ...], rows: Iterable[tuple[str, ...]], file_format: str
) -> None:
    """Write ``rows`` to ``path`` via a hidden temporary file and an atomic rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        if file_format == "csv":
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(fields)
            writer.writerows(rows)
        else:
            dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
            f.writelines(dumps(dict(zip(fields, row, strict=True))) + "\n" for row in rows)
    os.replace(tmp, path)


class Spool:
    """Rows that belong to a later day's file, kept on disk until that day.

    Items for ``(entity, day)`` are buffered in memory and appended, as pickled
    batches, to ``<dir>/<entity>-<day>.pkl``; ``take`` reads them back (in the
    order they were added) and deletes the file.  Memory therefore stays
    bounded by one day's rows plus the flush threshold, however long the
    look-ahead of the lifecycle events is.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._buffers: dict[tuple[str, int], list] = {}
        self._count = 0

    def adder(self, entity: str):
        buffers = self._buffers

        def add(day: int, item) -> None:
            key = (entity, day)
            buf = buffers.get(key)
            if buf is None:
                buf = buffers[key] = []
            buf.append(item)
            self._count += 1
            if self._count >= SPOOL_FLUSH_ITEMS:
                self.flush()

        return add

    def _path(self, entity: str, day: int) -> Path:
        return self.dir / f"{entity}-{day}.pkl"

    def flush(self) -> None:
        for (entity, day), items in self._buffers.items():
            with open(self._path(entity, day), "ab") as f:
                pickle.dump(items, f, protocol=pickle.HIGHEST_PROTOCOL)
        self._buffers.clear()
        self._count = 0

    def take(self, entity: str, day: int) -> list:
        """All items spooled for ``(entity, day)``; call after ``flush``."""
        path = self._path(entity, day)
        items: list = []
        if path.exists():
            with open(path, "rb") as f:
                while True:
                    try:
                        items.extend(pickle.load(f))
                    except EOFError:
                        break
            path.unlink()
        return items
