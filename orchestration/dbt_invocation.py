"""Where the dbt project is and how dbt is started: always as `attribution-dbt`.

`attribution-dbt` (orchestration/dbt_build_lock.py) turns `DATABASE_URL` into the
connection dbt_project/profiles.yml reads, so a caller hands a child dbt the URL
to build and nothing else. `run_dbt` is for the tests and the benchmarks, which
time or check dbt itself; the product builds only through the Dagster asset
`dbt_models` (orchestration/defs/attribution/dbt_assets.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from platform_core.settings import project_root

DBT_PROJECT_DIR = project_root() / "dbt_project"


def dbt_executable() -> str:
    """`attribution-dbt`: dbt itself, with writing commands under the build lock
    (orchestration/dbt_build_lock.py), so two builds never interleave on one database."""
    candidate = Path(sys.executable).parent / "attribution-dbt"
    return str(candidate) if candidate.exists() else "attribution-dbt"


def run_dbt(
    url: str, args: list[str], capture: bool = False, target_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`dbt <args>` in the project folder; returns the finished process.

    `target_path` keeps concurrent invocations (tests, the Dagster daemon) from
    sharing dbt's target/ and log folders.
    """
    env = dict(os.environ, DATABASE_URL=url, DBT_PROFILES_DIR=str(DBT_PROJECT_DIR))
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    if target_path is not None:
        env["DBT_TARGET_PATH"] = str(target_path / "target")
        env["DBT_LOG_PATH"] = str(target_path / "logs")
    return subprocess.run(
        [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR)],
        env=env,
        cwd=DBT_PROJECT_DIR,
        text=True,
        capture_output=capture,
        check=False,
    )


# dbt's partial parsing, kept per connection across target folders (PartialParse).
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
# Commands that load the project (and so parse it, fully or partially).
PARSING_COMMANDS = frozenset(
    {"build", "run", "test", "seed", "snapshot", "compile", "parse", "ls", "list", "docs",
     "show", "run-operation", "source", "retry", "clone"}
)  # fmt: skip
# Parses kept (about 1 MB each), the least recently used dropped first.
PARTIAL_PARSES_KEPT = 32
# The profile's connection as dbt_project/profiles.yml reads it (dbt's own check
# compares these, not the password).
_CONNECTION_VARIABLES = (
    "ATTRIBUTION_PGHOST", "ATTRIBUTION_PGPORT", "ATTRIBUTION_PGUSER", "ATTRIBUTION_PGDATABASE"
)  # fmt: skip


def _option(args: Sequence[str], name: str) -> str | None:
    """The value of dbt's option `name` (`--name X` or `--name=X`; the last one wins)."""
    value = None
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _copy_atomically(source: Path, destination: Path) -> None:
    """A reader of `destination` sees the old file or the new one, never half of one."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    try:
        partial.write_bytes(source.read_bytes())
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)


@dataclass
class PartialParse:
    """dbt's saved parse of the project, kept per connection across target folders.

    dbt parses the whole project again (10–20 s on the 2-core box) unless its target
    folder holds a `partial_parse.msgpack` written for the same connection, vars and
    dbt version; with one, it re-reads only the files that changed. Every Dagster dbt
    invocation has a target folder of its own, into which dagster-dbt copies
    `target/partial_parse.msgpack` — written by the definitions' offline `dbt parse`,
    for another connection, so dbt always rejected it — and so do the tests: each
    invocation paid a full parse. `attribution-dbt` therefore keeps the latest parse
    of each connection (database, vars) in `<project>/target/partial_parse/` and puts
    it in the target folder before dbt starts. dbt checks it exactly as it checks
    the one it left there itself (file checksums, profile, vars, environment
    variables, dbt version): a changed model or macro is parsed again, a parse made
    for anything else is thrown away for a full one."""

    target: Path  # the invocation's partial_parse.msgpack, where dbt reads and writes it
    kept: Path  # the latest parse for this connection and vars
    _found: tuple[int, int, int] | None = None

    @classmethod
    def for_invocation(
        cls, args: Sequence[str], variables: Mapping[str, str], environ: Mapping[str, str]
    ) -> PartialParse | None:
        """For `dbt <args>` run with the profile variables `variables` (none for a
        command that does not parse, or outside a dbt project)."""
        command = next((arg for arg in args if not arg.startswith("-")), None)
        if command not in PARSING_COMMANDS:
            return None
        project = Path(
            _option(args, "--project-dir") or environ.get("DBT_PROJECT_DIR") or os.getcwd()
        )
        if not (project / "dbt_project.yml").is_file():
            return None
        # As dbt resolves it: option, variable, dbt_project.yml (`target`); relative to the project.
        target = project / (
            _option(args, "--target-path") or environ.get("DBT_TARGET_PATH") or "target"
        )
        key = json.dumps(
            [[variables.get(name) for name in _CONNECTION_VARIABLES]]
            + [_option(args, name) for name in ("--vars", "--target", "--profile")]
        )
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        return cls(
            target / PARTIAL_PARSE_FILE, project / "target" / "partial_parse" / f"{name}.msgpack"
        )

    def restore(self) -> None:
        """Before dbt: this connection's latest parse into the target folder."""
        with contextlib.suppress(OSError):  # none kept, or dropped meanwhile: dbt parses
            _copy_atomically(self.kept, self.target)
            os.utime(self.kept)  # recently used: kept longest
        self._found = _stamp(self.target)

    def keep(self) -> None:
        """After dbt: the parse it wrote (none when nothing had changed) is this
        connection's latest."""
        written = _stamp(self.target)
        if written is None or written == self._found:
            return
        with contextlib.suppress(OSError):  # a cache: the next invocation parses again
            _copy_atomically(self.target, self.kept)
            self._drop_least_recently_used()

    def _drop_least_recently_used(self) -> None:
        kept = sorted(
            self.kept.parent.glob("*.msgpack"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for path in kept[PARTIAL_PARSES_KEPT:]:
            path.unlink(missing_ok=True)
