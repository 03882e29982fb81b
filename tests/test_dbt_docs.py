"""`make docs`: the dbt docs site as one static HTML file, with the marts' columns."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from platform_core.settings import project_root


def test_make_docs_writes_a_static_site(fresh_db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "dbt-docs"
    done = subprocess.run(
        ["make", "-s", "docs", f"DBT_DOCS_DIR={out}"],
        cwd=project_root(),
        env={**os.environ, "DATABASE_URL": fresh_db_url},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"open {out}/static_index.html" in done.stdout
    page = (out / "static_index.html").read_text()
    # The manifest is embedded: the marts and a documented column are in the page.
    for name in ("fct_partner_attribution", "partner_performance", "attributed_amount_usd"):
        assert name in page, name
