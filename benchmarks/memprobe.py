"""Run our loader on one directory in this process and print its figures as JSON.

Started as a subprocess by the ingestion stage, so the peak RSS it reports is
the loader's alone: the high-water mark of this process image (`VmHWM`), not
`ru_maxrss`, which Linux carries over exec from the process that started it —
that read the harness's own size (165–328 MB, growing with what the harness had
generated), not the loader's. The database URL comes from the environment
(BENCH_DATABASE_URL), never from argv.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ingestion import ingest_directory


def own_peak_rss_mb() -> float:
    """Peak resident memory of this process since its last exec, in MiB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # the line says kB
    raise RuntimeError("/proc/self/status has no VmHWM line: the memory probe needs Linux")


def main() -> int:
    url = os.environ["BENCH_DATABASE_URL"]
    directory = Path(sys.argv[1])
    clock = time.perf_counter()
    report = ingest_directory(url, directory)
    seconds = time.perf_counter() - clock
    print(
        json.dumps(
            {
                "ok": report.ok,
                "errors": report.errors,
                "seconds": seconds,
                "rows_read": report.total("rows_read"),
                "rows_loaded": report.total("rows_loaded"),
                "rows_quarantined": report.total("rows_quarantined"),
                "peak_rss_mb": own_peak_rss_mb(),
            }
        )
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
