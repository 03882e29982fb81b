"""What the figures were measured on: hardware and software versions."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

from platform_core.database import connect


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, object]:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        # The box may be shared: the load when the run started says how noisy it was.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions(url: str) -> dict[str, str]:
    with connect(url) as conn:
        (server,) = conn.execute("show server_version").fetchone()
    return {
        "python": platform.python_version(),
        "postgres": server,
        "dbt-core": _package("dbt-core"),
        "dbt-postgres": _package("dbt-postgres"),
        "dagster": _package("dagster"),
        "pandas": _package("pandas"),
    }
