"""report.html without a browser: the golden run's page, its plots and tables, escaping, no external
resources, the SVG charts, and the plot data on small frames with known answers."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lab.analysis.analyze import Analysis
from lab.analysis.runs import analyze_run
from lab.errors import LabError
from lab.report import browser, series, svg
from lab.report.html import render_html

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "analysis" / "golden-run"
NASTY = "<script>alert(\"x\")</script> & 'quoted' ]]>"
SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    return analyze_run(GOLDEN)


@pytest.fixture(scope="module")
def page(analysis: Analysis) -> str:
    return render_html(GOLDEN, analysis)


def plots_of(html: str) -> dict[str, str]:
    """Every inline chart of a page by its data-plot name."""
    charts = re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL)
    return {ET.fromstring(chart).attrib["data-plot"]: chart for chart in charts}


def samples_frame(rows: Sequence[tuple[int, str, float, float | None, float | None, str, str]]) -> pl.DataFrame:
    """Samples as lab.report.series reads them, from (trial, variant, intended, start, end, outcome, label)
    with times in seconds."""

    def ns(seconds: float | None) -> int | None:
        return None if seconds is None else round(seconds * 1e9)

    return pl.DataFrame(
        [
            {
                "trial": trial,
                "variant": variant,
                "intended_ns": ns(intended),
                "start_ns": ns(start),
                "end_ns": ns(end),
                "outcome": outcome,
                "label": label,
            }
            for trial, variant, intended, start, end, outcome, label in rows
        ],
        schema={
            "trial": pl.Int64,
            "variant": pl.String,
            "intended_ns": pl.Int64,
            "start_ns": pl.Int64,
            "end_ns": pl.Int64,
            "outcome": pl.String,
            "label": pl.String,
        },
    )


# ---------------------------------------------------------------------------------------------
# the page


def test_the_golden_run_has_every_plot_it_has_data_for(page: str) -> None:
    plots = plots_of(page)
    assert set(plots) == {"latency-cdf", "throughput", "in-flight", "cpu", "memory", "cost"}
    for name, chart in plots.items():
        root = ET.fromstring(chart)  # well-formed XML, not just tag soup
        assert root.tag == f"{SVG_NS}svg" and root.attrib["class"] == "plot" and root.attrib["viewBox"]
        assert root.find(f"{SVG_NS}title") is not None, name
        assert f'<figure id="plot-{name}">' in page
    # the api workload has one label, no pool and no sweep: those plots are left out, not drawn empty
    assert "label-share" not in plots and "pool-wait" not in plots and "sweep" not in plots


def test_the_page_has_its_tables_and_summary(page: str, analysis: Analysis) -> None:
    for anchor in ("targets", "headline", "config", "plots", "details"):
        assert f'<section id="{anchor}">' in page
    assert page.count("<table>") >= 5  # targets, headline, all comparisons, per variant, cost
    assert '<strong>optimized</strong>: <span class="grade">grade ' in page
    improved = sum(c.verdict == "improved" for c in analysis.comparisons)
    assert f'<span class="improved">{improved} improved</span>' in page
    assert "latency p95 (ms)" in page and "[-35.0, -21.6] %" in page  # render.interval, as lab run prints it
    assert "traffic: 2,000,000 requests/day" in page  # the cost assumptions
    assert page.count("<figcaption>") == len(plots_of(page))


def test_the_page_loads_nothing_from_elsewhere(page: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:[a-z]+:)?//""", page, flags=re.IGNORECASE)
    assert not re.search(r"url\(|@import|<link\b|<img\b|<iframe\b", page, flags=re.IGNORECASE)
    assert re.findall(r"<script\b[^>]*>", page) == ["<script>"]  # one inline script, no src
    assert len(page.encode()) < 200_000


def test_the_page_is_deterministic(analysis: Analysis, page: str) -> None:
    assert render_html(GOLDEN, analysis) == page


def test_nasty_configuration_strings_are_escaped(tmp_path: Path, analysis: Analysis) -> None:
    run = Path(shutil.copytree(GOLDEN, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    config["description"] = NASTY
    config["diff"] = [{"key": NASTY, "values": {"baseline": NASTY, "optimized": {"nested": NASTY}}}]
    (run / "config.json").write_text(json.dumps(config))
    html = render_html(run, analysis)
    assert "<script>alert" not in html and "]]>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quoted&#x27; ]]&gt;" in html
    config_section = re.search(r'<section id="config">.*?</section>', html, flags=re.DOTALL)
    assert config_section is not None and config_section.group(0).count("&lt;script&gt;") == 3


def test_a_run_without_samples_still_renders_what_it_can(tmp_path: Path) -> None:
    run = Path(shutil.copytree(GOLDEN, tmp_path / "run"))
    for path in run.glob("trials/*/samples-*.parquet"):
        path.unlink()
    plots = plots_of(render_html(run, analyze_run(run)))
    assert set(plots) == {"cpu", "memory", "cost"}


# ---------------------------------------------------------------------------------------------
# charts


def test_chart_text_is_escaped_and_the_svg_stays_well_formed() -> None:
    chart = svg.line_chart(
        "nasty",
        NASTY,
        [svg.Series(NASTY, [1.0, 2.0, float("nan")], [1.0, float("inf"), 3.0], svg.color(0), labels=[NASTY])],
        x_label_text=NASTY,
        y_label_text=NASTY,
        markers=True,
    )
    root = ET.fromstring(chart)
    assert root.attrib["data-plot"] == "nasty" and root.find(f"{SVG_NS}title").text == NASTY  # type: ignore[union-attr]
    assert "nan" not in chart.lower() and "inf" not in chart.lower()
    assert len(root.findall(f".//{SVG_NS}circle")) == 1  # the only finite point
    bars = svg.bar_chart("bars", NASTY, [NASTY, "b"], [svg.Bars(NASTY, [1.0, 2.0], svg.color(1))], y_label_text="x")
    assert ET.fromstring(bars).attrib["class"] == "plot"


def test_ticks_are_round_numbers_covering_the_data() -> None:
    assert svg.linear_ticks(0, 7.3) == [0, 2, 4, 6, 8]
    assert svg.linear_ticks(0.0, 0.3) == [0.0, 0.1, 0.2, 0.3]
    assert svg.linear_ticks(0.0, 0.24) == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25]
    flat = svg.linear_ticks(5, 5)  # one value: a little room on both sides
    assert flat[0] < 5 < flat[-1] and len(flat) > 2
    assert svg.log_ticks(0.02, 80) == [0.01, 0.1, 1, 10, 100]
    assert svg.log_ticks(3, 40) == [1, 2, 5, 10, 20, 50, 100]
    assert [svg.number(x) for x in (0, 0.1 + 0.2, 2500, 20000, 3e6)] == ["0", "0.3", "2500", "20k", "3M"]


def test_stacked_bars_add_up() -> None:
    chart = svg.bar_chart(
        "stack",
        "stack",
        ["a"],
        [svg.Bars("x", [1.0], "#000"), svg.Bars("y", [3.0], "#111")],
        y_label_text="v",
        stacked=True,
        totals=True,
    )
    bars = [rect for rect in ET.fromstring(chart).iter(f"{SVG_NS}rect") if rect.find(f"{SVG_NS}title") is not None]
    low, high = (float(rect.attrib["height"]) for rect in bars)
    assert high == pytest.approx(3 * low, abs=0.2)
    assert float(bars[1].attrib["y"]) + high == pytest.approx(float(bars[0].attrib["y"]), abs=0.2)  # on top
    assert ">4.00<" in chart  # the total


# ---------------------------------------------------------------------------------------------
# plot data


def test_latency_cdf_is_monotone_ends_at_one_and_stays_small() -> None:
    rng = np.random.default_rng(1)
    latencies = rng.lognormal(0, 1, 10_000)
    rows = [(0, "a", 0.0, 0.0, float(x) / 1e3, "ok", "") for x in latencies] + [
        (0, "a", 0.0, None, None, "dropped", "")
    ]
    cdf = series.latency_cdf(samples_frame(rows))
    assert 300 <= cdf.height <= series.MAX_CDF_POINTS
    assert cdf["latency_ms"].is_sorted() and cdf["cumulative"].is_sorted()
    assert cdf["cumulative"][-1] == 1.0  # times are whole ns: latencies match to 1e-6 ms
    assert cdf["latency_ms"][-1] == pytest.approx(latencies.max(), abs=1e-6)
    assert cdf["latency_ms"][0] == pytest.approx(latencies.min(), abs=1e-6)
    small = series.latency_cdf(samples_frame([(0, "a", 0.0, 0.0, t, "ok", "") for t in (0.003, 0.001, 0.002)]))
    assert small["latency_ms"].to_list() == pytest.approx([1.0, 2.0, 3.0])
    assert small["cumulative"].to_list() == pytest.approx([1 / 3, 2 / 3, 1.0])


def shift(seconds: float | None, by: float = 100.0) -> float | None:
    return None if seconds is None else seconds + by


def test_in_flight_and_throughput_per_one_second_bin() -> None:
    rows = [
        (0, "a", 0.0, 0.0, 2.5, "ok", ""),  # in flight for all of bins 0 and 1, half of bin 2
        (0, "a", 0.5, 0.5, 1.0, "ok", ""),  # half of bin 0; ends at 1.0, in bin 1
        (0, "a", 1.2, 1.2, None, "unfinished", ""),  # never answered: in flight to the end
        (0, "a", 1.4, 1.4, 1.6, "http_500", ""),  # in flight 0.2 s; an error is not throughput
        (0, "a", 2.0, None, None, "dropped", ""),  # never sent: never in flight
        (0, "a", 3.2, 3.2, 3.3, "ok", ""),  # after the measured phase: no partial bin
    ]
    timeline = series.timeline(samples_frame(rows), measured_s={0: 3.1})
    assert timeline["second"].to_list() == [0.0, 1.0, 2.0]
    assert timeline["in_flight"].to_list() == pytest.approx([1.5, 2.0, 1.5])
    assert timeline["ok_per_s"].to_list() == [0.0, 1.0, 1.0]
    # every trial's bins start at its own first intended send time
    later = [(1, "b", i + 100, shift(start), shift(end), o, label) for _, _, i, start, end, o, label in rows]
    both = series.timeline(samples_frame(rows + later), measured_s={0: 3.1, 1: 3.1})
    assert both.filter(pl.col("trial") == 1)["in_flight"].to_list() == pytest.approx([1.5, 2.0, 1.5])


def test_mean_in_flight_matches_a_brute_force_count() -> None:
    rng = np.random.default_rng(7)
    start = rng.uniform(0, 10, 500)
    end = start + rng.exponential(0.7, 500)
    end[::50] = np.inf
    edges = np.arange(0.0, 11.0)
    fine = np.arange(0.0, 10.0, 0.0005) + 0.00025
    counts = ((start[None, :] <= fine[:, None]) & (end[None, :] > fine[:, None])).sum(axis=1)
    brute = counts.reshape(10, -1).mean(axis=1)
    assert series.mean_in_flight(start, end, edges)[:10] == pytest.approx(brute, abs=0.02)


def test_label_shares_need_two_labels_in_some_variant() -> None:
    tiers = [(0, "a", 0.0, 0.0, 0.1, "ok", "l1")] * 3 + [(0, "a", 0.0, 0.0, 0.1, "error:postgres", "l3")]
    tiers += [(1, "b", 0.0, 0.0, 0.1, "ok", "l1")]
    shares = series.label_shares(samples_frame(tiers))
    assert shares.select("variant", "label", "share").rows() == [("a", "l1", 0.75), ("a", "l3", 0.25), ("b", "l1", 1.0)]
    one_each = [(0, "a", 0.0, 0.0, 0.1, "ok", "batch1"), (1, "b", 0.0, 0.0, 0.1, "ok", "batch32")]
    assert series.label_shares(samples_frame(one_each)).height == 0


def test_resources_and_trial_metrics_come_from_trials_parquet() -> None:
    trials = pl.DataFrame(
        {
            "variant": ["a", "a", "a", "b", "b"],
            "trial": [0, 0, 0, 1, 1],
            "metric": ["postgres_cpu_s", "postgres_memory_mb", "pool_wait_ms", "redis_cpu_s", "pool_wait_ms"],
            "value": [1.5, 100.0, 3.0, 0.5, float("nan")],
        }
    )
    assert series.resources(trials).rows() == [(0, "a", "postgres", 1.5, 100.0), (1, "b", "redis", 0.5, None)]
    assert series.trial_metric(trials, "pool_wait_ms").rows() == [(0, "a", 3.0)]
    assert series.trial_metric(trials, "batch_size").height == 0


def test_cost_breakdown_and_sweep_of_the_golden_run(analysis: Analysis, tmp_path: Path) -> None:
    cost = series.cost_breakdown(analysis)
    per_variant = cost.group_by("variant").agg(pl.col("per_day").sum())
    for variant, total in per_variant.rows():
        assert total == pytest.approx(analysis.cost[variant]["cost_per_day"])
    assert set(cost["component"]) == {"CPU", "memory", "upstream calls", "llm tokens"}
    trials = series.trial_metrics(GOLDEN)
    assert series.sweep_points(GOLDEN, analysis, trials).height == 0  # api run, no sweep.parquet
    run = Path(shutil.copytree(GOLDEN, tmp_path / "run"))
    pl.DataFrame(
        {"batch": [1, 8], "concurrency": [4, 4], "predictions_per_s": [100.0, 500.0], "p95_ms": [2.0, 5.0]}
    ).write_parquet(run / "sweep.parquet")
    sweep = series.sweep_points(run, analysis, trials)
    assert sweep.rows() == [("baseline", 4, 1, 100.0, 2.0), ("baseline", 4, 8, 500.0, 5.0)]
    assert "sweep" in plots_of(render_html(run, analysis))


# ---------------------------------------------------------------------------------------------
# the browser check, without a browser


def test_the_dumped_dom_and_console_log_are_read() -> None:
    dom = '<html><body data-plots="3" data-plots-rendered="2" data-errors="boom\nbang"><p>x</p></body></html>'
    log = (
        '[1:1:1204/233620.919289:INFO:CONSOLE:4] "Uncaught TypeError: x", source: file:///r.html (4)\n'
        '[1:1:1204/233620.919289:INFO:CONSOLE:9] "Error: <circle> attribute cx: Expected length", source: (9)\n'
        '[1:1:1204/233620.919289:INFO:CONSOLE:5] "a message", source: file:///r.html (5)\n'
        "[1:1:1204/233620.207036:ERROR:dbus/bus.cc:405] Failed to connect to the bus\n"
    )
    check = browser.parse_dump(dom, log)
    assert (check.plots, check.rendered, check.errors) == (3, 2, ["boom", "bang"])
    assert len(check.console_errors) == 2 and not check.ok
    silent = browser.parse_dump("<html><body><p>no script ran</p></body></html>", "")
    assert silent.errors and "did not run" in silent.errors[0] and not silent.ok
    assert browser.parse_dump('<body data-plots="2" data-plots-rendered="2">', "").ok


def test_a_missing_browser_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert browser.find_chromium() is None
    with pytest.raises(LabError, match="no Chromium found"):
        browser.check_in_browser(tmp_path / "report.html")
