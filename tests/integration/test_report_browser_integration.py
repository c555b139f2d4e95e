"""report.html of a real run, loaded in a real headless Chromium: every plot renders, no script or
console error. Chromium must be installed (`make setup` does): a missing one fails, never skips."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from lab.analysis.runs import analyze_run
from lab.report.browser import check_in_browser, find_chromium
from lab.report.html import CHECK_SCRIPT, render_html
from tests.conftest import REPO, run_lab

CACHE_PLOTS = ("latency-cdf", "throughput", "in-flight", "label-share", "cpu", "memory", "cost")


def require_chromium() -> None:
    """Fail (never skip) without a browser: `make setup` installs one."""
    if find_chromium() is None:
        pytest.fail("no chromium, chromium-browser or google-chrome on PATH: `make setup` installs it (apt chromium)")


def test_the_report_of_a_cache_run_renders_in_chromium(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    require_chromium()
    results = tmp_path / "results"
    result = run_lab(
        "run",
        str(REPO / "experiments" / "cache.toml"),
        "--quick",
        "--progress",
        "none",
        env={"LAB_RESULTS_DIR": str(results)},
        timeout=600,
    )
    # exit 1 is a complete run whose answer is "no" (a missed target): the report is wanted all the more
    assert result.returncode in (0, 1), result.stdout + result.stderr
    (run_dir,) = sorted(results.iterdir())
    assert json.loads((run_dir / "status.json").read_text())["state"] == "complete"
    html = render_html(run_dir, analyze_run(run_dir))
    page = tmp_path / "report.html"
    page.write_text(html)
    assert len(html.encode()) < 1_000_000
    for name in CACHE_PLOTS:
        assert f'data-plot="{name}"' in html, name
    check = check_in_browser(page)
    assert check.errors == [] and check.console_errors == [], check
    assert check.plots == check.rendered >= len(CACHE_PLOTS), check


def test_the_browser_check_sees_a_broken_page(tmp_path: Path) -> None:
    """The check can fail: an empty plot and a script error (the report's own check script) are both seen."""
    require_chromium()
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body>"
        '<svg class="plot" data-plot="empty" viewBox="0 0 10 10"></svg>'
        '<svg class="plot" data-plot="drawn" viewBox="0 0 10 10"><rect width="5" height="5"/></svg>'
        f"<script>{CHECK_SCRIPT}</script><script>undefinedFunction();</script></body></html>"
    )
    check = check_in_browser(page)
    assert (check.plots, check.rendered) == (2, 1)
    assert any("undefinedFunction" in error for error in check.errors), check
    assert not check.ok
