"""The analysis on stored samples: exact summaries, golden comparison tables, cost recomputed by
hand, targets and grade, verdict rules, and `lab analyze` / `lab compare` on stored runs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lab.analysis.analyze import Analysis, grade
from lab.analysis.blocks import load_blocks, sample_files
from lab.analysis.catalog import catalog
from lab.analysis.render import report_lines
from lab.analysis.runs import analyze_run, compare_runs
from lab.analysis.stats import judge
from lab.config.analysis import Target
from lab.config.experiment import load_experiment
from lab.errors import ConfigError
from tests.support.cli import run_cli

DATA = Path(__file__).resolve().parents[1] / "data" / "analysis"
GOLDEN = DATA / "golden-run"
EXPECTED = DATA / "golden-report.txt"


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    """A copy of the stored run (analysis writes beside the run; the stored one stays clean)."""
    return Path(shutil.copytree(GOLDEN, tmp_path / "golden-run"))


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    return analyze_run(GOLDEN)


def all_latencies_ms(run: Path, variant: str) -> np.ndarray:
    files = [p for (_, v), paths in sample_files(run).items() if v == variant for p in paths]
    frame = pl.read_parquet(files).filter(pl.col("end_ns").is_not_null())
    return ((frame["end_ns"] - frame["intended_ns"]) / 1e6).to_numpy()


def test_report_matches_the_stored_golden_output(analysis: Analysis) -> None:
    assert "\n".join(report_lines(analysis)) + "\n" == EXPECTED.read_text()


@pytest.mark.parametrize("variant", ["baseline", "optimized"])
def test_percentiles_are_exact_from_every_sample(analysis: Analysis, variant: str) -> None:
    latencies = all_latencies_ms(GOLDEN, variant)
    estimates = analysis.estimates[variant]
    quantiles = {"latency_p50_ms": 0.5, "latency_p90_ms": 0.9, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}
    for name, q in quantiles.items():
        assert estimates[name].value == pytest.approx(float(np.quantile(latencies, q)), rel=1e-12)
        assert estimates[name].samples == len(latencies) == 3000
    assert estimates["latency_mean_ms"].value == pytest.approx(float(latencies.mean()), rel=1e-12)


def test_rates_and_throughput_count_every_sample(analysis: Analysis) -> None:
    frames = [pl.read_parquet(p) for (_, v), paths in sample_files(GOLDEN).items() if v == "baseline" for p in paths]
    outcomes = pl.concat(frames)["outcome"].cast(pl.String)
    estimates = analysis.estimates["baseline"]
    assert estimates["error_rate"].value == pytest.approx((outcomes != "ok").sum() / len(outcomes))
    assert estimates["throttle_rate"].value == pytest.approx((outcomes == "llm_throttled").sum() / len(outcomes))
    assert estimates["throughput_rps"].value == pytest.approx((outcomes == "ok").sum() / 20.0)  # 2 trials x 10 s


def test_few_samples_flag_a_percentile_and_make_its_comparison_inconclusive(analysis: Analysis) -> None:
    # 3,000 samples: p99 has 30 beyond it (kept), p99.9 has 3 (flagged, as MLPerf would)
    assert analysis.estimates["baseline"]["latency_p99_ms"].flag == ""
    assert "needs 10,000" in analysis.estimates["baseline"]["latency_p99_9_ms"].flag


def test_verdicts_on_the_golden_run(analysis: Analysis) -> None:
    verdicts = {c.metric: c.verdict for c in analysis.comparisons}
    # optimized draws from a median 30 % lower; the same error and throttle rates
    assert verdicts["latency_p95_ms"] == "improved"
    assert verdicts["latency_p50_ms"] == "improved"
    assert verdicts["error_rate"] == "no significant change"
    assert verdicts["throughput_rps"] == "no significant change"
    p50 = next(c for c in analysis.comparisons if c.metric == "latency_p50_ms")
    assert p50.low < p50.change < p50.high < 0
    assert p50.change == pytest.approx(p50.candidate_value / p50.baseline_value - 1)


def test_numpy_and_polars_block_paths_agree() -> None:
    from lab.analysis.blocks import trial_from_arrays

    loaded = load_blocks(GOLDEN, 20, measured_s={i: 10.0 for i in range(4)})
    for trial in loaded["baseline"].trials:
        files = sample_files(GOLDEN)[(trial.trial, "baseline")]
        frame = pl.read_parquet(files).sort("intended_ns")
        latency = ((frame["end_ns"] - frame["intended_ns"]) / 1e6).to_numpy()
        twin = trial_from_arrays(trial.trial, latency, 20, 10.0, frame["outcome"].cast(pl.String).to_numpy())
        # the same totals per column and the same latency histogram (blocks are cut differently:
        # by send time in the files, by count in the twin)
        assert twin.features.sum(axis=0)[:4] == pytest.approx(trial.features.sum(axis=0)[:4])
        assert twin.bin0 == trial.bin0
        assert np.array_equal(twin.hist.sum(axis=0), trial.hist.sum(axis=0))


def test_cost_recomputes_exactly_from_the_stored_resources_and_price_sheet(analysis: Analysis) -> None:
    prices = load_experiment(GOLDEN / "experiment.toml").cost
    trials = pl.read_parquet(GOLDEN / "trials.parquet")
    for variant in ("baseline", "optimized"):
        per_trial = []
        for trial in sorted(set(trials.filter(pl.col("variant") == variant)["trial"].to_list())):
            m = dict(trials.filter(pl.col("trial") == trial).select("metric", "value").iter_rows())
            n = m["trial_requests"]
            day = prices.requests_per_day
            cpu = m["mock_api_cpu_s"] / n * day / 3600 * prices.cpu_core_hour
            memory = m["mock_api_memory_mb"] / 1024 * 24 * prices.memory_gb_hour
            calls = (m["mock_crm_requests"] * 0.0001 + m["mock_listings_requests"] * 0.00005) / n * day
            tokens = m["mock_llm_tokens"] / n * day / 1000 * 0.002
            per_trial.append(cpu + memory + calls + tokens)
        expected = sum(per_trial) / len(per_trial)
        assert analysis.cost[variant]["cost_per_day"] == pytest.approx(expected, rel=1e-12)
        assert analysis.cost[variant]["cost_per_30_days"] == pytest.approx(30 * expected, rel=1e-12)
    saved = analysis.savings["optimized"]
    base, cand = analysis.cost["baseline"]["cost_per_day"], analysis.cost["optimized"]["cost_per_day"]
    assert saved["savings_per_day"] == pytest.approx(base - cand, rel=1e-12)
    assert saved["cost_reduction"] == pytest.approx(1 - cand / base, rel=1e-12)
    assert saved["roi_30_days"] == pytest.approx(((base - cand) * 30 - 100.0) / 100.0, rel=1e-9)


def test_targets_and_grade(analysis: Analysis) -> None:
    results = {(t.variant, t.metric): t for t in analysis.targets}
    p95 = results[("optimized", "latency_p95_ms")]
    assert p95.target.below == 200 and p95.met == (p95.value < 200)
    assert ("baseline", "cost_reduction") not in results  # only a candidate reduces cost
    grades = analysis.grades()
    met = sum(t.met for t in analysis.targets if t.variant == "optimized")
    assert grades["optimized"]["met"] == met and grades["optimized"]["total"] == 2


@pytest.mark.parametrize(
    ("share", "letter"),
    [(1.0, "A+"), (0.99, "A"), (0.9, "A"), (0.89, "B+"), (0.8, "B+"), (0.75, "B"), (0.6, "C"), (0.59, "D"), (0.0, "D")],
)
def test_grade_boundaries_follow_the_original_framework(share: float, letter: str) -> None:
    assert grade(share) == letter


def test_target_bounds() -> None:
    assert Target(below=200).met(199.9) and not Target(below=200).met(200.0)
    assert Target(above=0.95).met(0.951) and not Target(above=0.95).met(math.nan)
    with pytest.raises(ValueError, match="below"):
        Target()


@pytest.mark.parametrize(
    ("change", "low", "high", "expected"),
    [
        (-0.2, -0.3, -0.1, "improved"),  # significant, beyond 5 %
        (0.2, 0.1, 0.3, "regressed"),
        (-0.03, -0.04, -0.02, "no significant change"),  # significant but within the noise threshold
        (0.01, -0.1, 0.12, "no significant change"),  # interval includes 0
        (0.01, -0.6, 0.9, "inconclusive"),  # includes 0 but far too wide to say "no change"
    ],
)
def test_verdict_rules(change: float, low: float, high: float, expected: str) -> None:
    metric = catalog("api").metrics["latency_p95_ms"]
    assert judge(metric, change, low, high, threshold=0.05, resolution=0.5)[0] == expected


def test_higher_is_better_metrics_flip_the_verdict() -> None:
    throughput = catalog("api").metrics["throughput_rps"]
    assert judge(throughput, 0.2, 0.1, 0.3, 0.05, 0.5)[0] == "improved"


def test_a_run_compared_with_itself_shows_no_change(golden: Path, tmp_path: Path) -> None:
    twin = Path(shutil.copytree(golden, tmp_path / "twin"))
    analyses, warnings = compare_runs(golden, twin)
    assert warnings == []
    assert [a.baseline for a in analyses] == ["a/baseline", "a/optimized"]
    for a in analyses:
        for c in a.comparisons:
            assert c.change == pytest.approx(0.0, abs=1e-12)
            assert c.verdict in ("no significant change", "inconclusive"), c


def test_compare_refuses_another_experiment_unless_forced(golden: Path, tmp_path: Path) -> None:
    other = Path(shutil.copytree(golden, tmp_path / "other"))
    config = json.loads((other / "config.json").read_text())
    config["host"]["hostname"] = "elsewhere"
    (other / "config.json").write_text(json.dumps(config))
    text = (other / "experiment.toml").read_text().replace('name = "golden"', 'name = "other"')
    (other / "experiment.toml").write_text(text)
    with pytest.raises(ConfigError, match="refusing to compare"):
        compare_runs(golden, other)
    _, warnings = compare_runs(golden, other, force=True)
    assert any("--force" in w for w in warnings)
    assert any("different hosts (hostname)" in w for w in warnings)


def test_lab_analyze_writes_the_analysis_beside_the_run(
    golden: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the cost-reduction target is missed: the analysis is written and the exit status is 1
    assert run_cli(monkeypatch, "analyze", str(golden)) == 1
    captured = capsys.readouterr()
    assert "latency p95 (ms)" in captured.out and "improved" in captured.out
    assert captured.err.strip() == "lab: error: optimized: cost_reduction > 25 % missed (-0.2 %) (hint: see report.md)"
    document = json.loads((golden / "analysis" / "analysis.json").read_text())
    assert document["grades"]["optimized"]["total"] == 2
    assert set(document["noise_floor"]) >= {"latency_p95_ms", "error_rate"}
    comparison = pl.read_parquet(golden / "analysis" / "comparison.parquet")
    assert comparison.filter(pl.col("metric") == "latency_p95_ms")["verdict"].item() == "improved"
    assert (golden / "analysis" / "report.txt").read_text() == EXPECTED.read_text()


def test_thresholds_from_an_aa_run(golden: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    aa = Path(shutil.copytree(golden, tmp_path / "aa"))
    config = json.loads((aa / "config.json").read_text())
    (aa / "config.json").write_text(json.dumps(config | {"mode": "aa"}))
    (aa / "analysis").mkdir()
    (aa / "analysis" / "analysis.json").write_text(json.dumps({"noise_floor": {"latency_p95_ms": 0.5}}))
    result = analyze_run(golden, threshold_from=aa)
    p95 = next(c for c in result.comparisons if c.metric == "latency_p95_ms")
    assert p95.threshold == 0.5
    assert p95.verdict == "no significant change"  # -28.6 % is inside a 50 % noise floor
    assert result.threshold_source == "A/A run aa"
    # an A/B run is not a noise floor: one line, exit 2
    assert run_cli(monkeypatch, "analyze", str(golden), "--threshold-from", str(golden)) == 2


@pytest.mark.parametrize("args", [["analyze", "/nonexistent"], ["compare", "/nonexistent", "/nonexistent"]])
def test_a_path_that_is_not_a_run_is_one_line_and_exit_2(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(monkeypatch, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/nonexistent: no such run directory" in err[0]
