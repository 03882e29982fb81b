"""The Dagster UI in a real browser: `attribution dev` on a free port, over what
`attribution demo` left, driven by headless Chromium (docs/development.md, "The UI
in a browser").

It checks what a user opens first: the lineage raw → staging → marts, the demo's
run on the Runs page, the backlog check's result and the System health panel.
One PNG per page visited goes to test-artifacts/ui/ (also when an assertion
fails: the picture shows what the page showed).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from platform_core.settings import project_root
from tests.conftest import DemoDeployment
from tests.test_dev_server import free_port


def chromium_path() -> str | None:
    """Debian's `chromium` (apt-get install chromium); Playwright's own browsers are not used."""
    return shutil.which("chromium") or next(
        (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.access(p, os.X_OK)),
        None,
    )


# At collection: a fixture's skip would come after the session's demo had run.
CHROMIUM = chromium_path()
if CHROMIUM is None:
    pytest.skip("chromium not installed: apt-get install chromium", allow_module_level=True)

ARTIFACTS = project_root() / "test-artifacts" / "ui"
# The React app loads its data with GraphQL after the page: on two busy cores the
# first asset graph takes tens of seconds. Waits are for text and elements, never sleeps.
TIMEOUT_MS = 120_000
SERVER_START_S = 240.0
SERVER_STOP_S = 30.0


@dataclass
class Browser:
    """One headless Chromium page on the UI at `base`, and the screenshots it took."""

    page: Page
    base: str
    shots: list[Path] = field(default_factory=list)

    @contextmanager
    def visit(self, name: str, path: str) -> Iterator[Page]:
        """Open `path`; whatever the assertions inside, save `<name>.png` afterwards."""
        self.page.goto(self.base + path)
        try:
            yield self.page
        finally:
            shot = ARTIFACTS / f"{name}.png"
            self.page.screenshot(path=str(shot))
            self.shots.append(shot)


@pytest.fixture(scope="module")
def dev_server(
    demo_deployment: DemoDeployment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`attribution dev` on a free port over the demo's database and instance: its URL."""
    port = free_port()
    logs = tmp_path_factory.mktemp("dev_server")
    env = {**os.environ, **demo_deployment.env, "LANDING_DIR": str(demo_deployment.landing)}
    with (logs / "stdout").open("w") as out, (logs / "stderr").open("w") as err:
        # Its own process group: the webserver, daemon, code servers and any run the
        # daemon launched are stopped together.
        server = subprocess.Popen(
            # `attribution dev` restores the default SIGINT/SIGTERM handling before it
            # execs `dagster dev`, so SIGTERM stops it even from a background job.
            [str(Path(sys.executable).parent / "attribution"), "dev", "--port", str(port)],
            cwd=project_root(),  # workspace.yaml and its working directory
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while not answers(url + "/server_info"):
            if server.poll() is not None:
                pytest.fail(f"attribution dev exited {server.returncode}: {tail(logs)}")
            if time.monotonic() - started > SERVER_START_S:
                pytest.fail(
                    f"attribution dev did not answer in {SERVER_START_S:.0f} s: {tail(logs)}"
                )
            time.sleep(1)
        yield url
    finally:
        stop(server)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def tail(logs: Path) -> str:
    return ((logs / "stdout").read_text() + (logs / "stderr").read_text())[-3000:]


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to `dagster dev` (it shuts its services down through their pipes); then
    what is left of its process group (code servers winding down, or everything when
    it did not stop within SERVER_STOP_S) is killed."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            server.wait(timeout=SERVER_STOP_S)
    with suppress(ProcessLookupError):  # unless the whole group has ended
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


@pytest.fixture(scope="module")
def browser(dev_server: str, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """One headless Chromium for the module; lists its screenshots at the end."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()  # the folder shows this run's pages only
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = launched.new_page(viewport={"width": 1600, "height": 1200})
        page.set_default_timeout(TIMEOUT_MS)
        # Dagster's "Join the community" dialog on localhost covers the page: the UI
        # stores its dismissal in localStorage under this key.
        page.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
        found = Browser(page, dev_server)
        yield found
        launched.close()
    listing = "\n".join(
        [f"\nUI screenshots ({len(found.shots)}):", *(f"  {shot}" for shot in found.shots)]
    )
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        print(listing)  # on the terminal, whether the tests passed or not


def group_edges(page: Page) -> set[tuple[str, str]]:
    """The edges between the collapsed group nodes of the global lineage graph, as
    (upstream group, downstream group): each edge is an SVG path drawn from the right
    side of one group's box to the left side of another's."""
    drawn = page.evaluate(
        """() => {
            const svg = document.querySelector('svg:has(foreignObject.group)');
            const groups = [...svg.querySelectorAll('foreignObject.group')].map((node) => ({
                name: (node.querySelector('[data-tooltip]')?.dataset.tooltip
                       ?? node.innerText).trim(),
                x: +node.getAttribute('x'), y: +node.getAttribute('y'),
                w: +node.getAttribute('width'), h: +node.getAttribute('height'),
            }));
            const paths = [...svg.querySelectorAll(':scope > path')].map((p) => p.getAttribute('d'));
            return {groups, paths};
        }"""
    )
    groups = drawn["groups"]

    def group_at(x: float, y: float, side: str) -> str | None:
        near = [
            g
            for g in groups
            if abs((g["x"] + g["w"] if side == "right" else g["x"]) - x) <= 20
            and g["y"] <= y <= g["y"] + g["h"]
        ]
        return near[0]["name"] if len(near) == 1 else None

    edges = set()
    for path in drawn["paths"]:
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path)]
        start, end = numbers[:2], numbers[-2:]
        source, target = group_at(*start, "right"), group_at(*end, "left")
        assert source and target, (path, groups)
        edges.add((source, target))
    return edges


def test_lineage_runs_from_raw_through_staging_to_the_marts(browser: Browser) -> None:
    """The global lineage shows the groups ingestion (the raw tables), staging and
    marts joined by edges in that order; the lineage upstream of marts/fct_deals
    reaches staging models and raw tables."""
    with browser.visit("global_lineage", "/asset-groups") as page:
        for group in ("ingestion", "staging", "attribution", "marts"):
            expect(
                page.locator("foreignObject.group").get_by_text(group, exact=True)
            ).to_be_visible()
        page.wait_for_function(
            "document.querySelectorAll('svg:has(foreignObject.group) > path').length > 0"
        )
        edges = group_edges(page)
        assert ("ingestion", "staging") in edges, edges
        # The marts read staging through the attribution models (the intermediate layer).
        assert ("staging", "attribution") in edges and ("attribution", "marts") in edges, edges
        assert ("marts", "ingestion") not in edges and ("staging", "ingestion") not in edges

    with browser.visit("fct_deals_upstream", "/assets/marts/fct_deals?view=lineage") as page:
        page.get_by_role("button", name="Upstream").click()
        page.get_by_role("button", name="All", exact=True).click()
        expect(page).to_have_url(re.compile(r"lineageScope=upstream.*lineageDepth=\d+"))
        # The graph draws only what is in view, at the zoom last used (kept in
        # localStorage): forgotten, the page reopens with the whole graph in the window.
        page.evaluate("window.localStorage.removeItem('lineageGraphZoomLevel')")
        page.reload()
        graph = page.locator("svg:has(foreignObject)")
        for group in ("marts", "attribution", "staging", "ingestion"):
            expect(graph.get_by_text(group, exact=True).first).to_be_visible()
        # A staging model and raw tables, each a node upstream of fct_deals.
        for asset in ("stg_crm__partners", "deals", "ingest_batches"):
            expect(graph.get_by_text(asset, exact=True)).to_be_visible()
        expect(page.get_by_text("Not all upstream/downstream assets shown")).to_have_count(0)


def test_the_demo_run_succeeded_and_its_backlog_check_passed(
    browser: Browser, demo_deployment: DemoDeployment
) -> None:
    """The Runs page lists the demo's daily_refresh run as a success; the history of
    backlog_within_limits (marts/attribution_backlog) shows it passed in that run."""
    run_id = demo_deployment.run_id
    with browser.visit("runs", "/runs") as page:
        row = page.locator("[data-key]", has=page.locator(f'a[href="/runs/{run_id}"]'))
        expect(row).to_contain_text(run_id[:8])
        expect(row).to_contain_text("daily_refresh")
        expect(row).to_contain_text("Success")

    check = "/assets/marts/attribution_backlog?view=checks&checkDetail=backlog_within_limits"
    with browser.visit("backlog_check", check) as page:
        page.get_by_role("tab", name="Execution history").click()
        # The evaluation's own link (to its step in the run) names the run it ran in;
        # the backlog_watch schedule may have added later evaluations of its own.
        evaluation = page.locator("tr", has=page.locator(f'a[href^="/runs/{run_id}?"]'))
        expect(evaluation).to_contain_text("Passed")


def test_platform_health_shows_the_system_health_panel(browser: Browser) -> None:
    """monitoring/platform_health's page shows its `system_health` Markdown panel,
    which opens with the heading "System health"."""
    with browser.visit("platform_health", "/assets/monitoring/platform_health") as page:
        entry = page.locator("tr", has=page.get_by_text("system_health", exact=True)).first
        expect(entry).to_be_visible()
        # The UI shows a long Markdown value behind a button, in a dialog.
        longer = entry.get_by_text("[Show Markdown]")
        if longer.count():
            longer.click()
        heading = page.get_by_role("heading", name="System health", exact=True)
        expect(heading).to_be_visible()
        heading.scroll_into_view_if_needed()  # the screenshot opens on the panel's top
