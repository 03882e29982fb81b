"""Run our loader on one directory in this process and print its figures as JSON.

Started as a subprocess by the ingestion stage, so the peak RSS it reports
(`ru_maxrss`) is the loader's alone. The database URL comes from the
environment (BENCH_DATABASE_URL), never from argv.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

from ingestion import ingest_directory


def main() -> int:
    url = os.environ["BENCH_DATABASE_URL"]
    directory = Path(sys.argv[1])
    clock = time.perf_counter()
    report = ingest_directory(url, directory)
    seconds = time.perf_counter() - clock
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "ok": report.ok,
                "errors": report.errors,
                "seconds": seconds,
                "rows_read": report.total("rows_read"),
                "rows_loaded": report.total("rows_loaded"),
                "rows_quarantined": report.total("rows_quarantined"),
                "peak_rss_mb": round(peak_kb / 1024, 1),
            }
        )
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
