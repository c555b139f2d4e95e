"""The collector's readings of Docker stats and service counters, and `lab export` as OpenMetrics."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from lab.cli import main
from lab.collect.collector import docker_metrics, flatten_numbers
from lab.commands.analyze import analyze_and_write
from lab.report.openmetrics import render_openmetrics

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "analysis" / "golden-run"

STATS = {
    "cpu_stats": {"cpu_usage": {"total_usage": 2_500_000_000}},
    "memory_stats": {"usage": 100 * 2**20, "stats": {"inactive_file": 30 * 2**20}},
    "networks": {"eth0": {"rx_bytes": 1000, "tx_bytes": 2000}, "eth1": {"rx_bytes": 5, "tx_bytes": 7}},
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"major": 8, "minor": 0, "op": "read", "value": 4096},
            {"major": 8, "minor": 0, "op": "write", "value": 8192},
            {"major": 8, "minor": 16, "op": "Read", "value": 4},
        ]
    },
}


def test_docker_stats_become_cumulative_cpu_working_set_and_io() -> None:
    assert docker_metrics(STATS) == {
        "cpu_s": 2.5,
        "memory_mb": 70.0,  # usage less the inactive page cache, as `docker stats` shows
        "net_rx_bytes": 1005.0,
        "net_tx_bytes": 2007.0,
        "block_read_bytes": 4100.0,
        "block_write_bytes": 8192.0,
    }


def test_missing_stats_read_as_zero() -> None:
    assert docker_metrics({"blkio_stats": {"io_service_bytes_recursive": None}})["block_read_bytes"] == 0.0


def test_service_stats_are_flattened_to_numbers() -> None:
    document = {"requests": 3, "upstreams": {"llm": {"tokens": 10, "name": "llm"}}, "ok": True, "list": [1]}
    assert dict(flatten_numbers(document)) == {"requests": 3.0, "upstreams.llm.tokens": 10.0, "ok": 1.0}


@pytest.fixture
def analysed(tmp_path: Path) -> Path:
    run = Path(shutil.copytree(GOLDEN, tmp_path / "golden-run"))
    analyze_and_write(run, None, echo=False)
    return run


def test_openmetrics_export_parses_and_converts_to_base_units(analysed: Path) -> None:
    analysis = json.loads((analysed / "analysis" / "analysis.json").read_text())
    text = render_openmetrics(analysed.name, analysis)
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    p95 = {s.labels["variant"]: s.value for s in families["ablab_latency_p95_seconds"].samples}
    summary = {(r["variant"], r["metric"]): r["value"] for r in analysis["summary"]}
    assert p95["baseline"] == pytest.approx(summary[("baseline", "latency_p95_ms")] / 1000)
    assert families["ablab_latency_p95_seconds"].unit == "seconds"
    assert families["ablab_error_rate_ratio"].unit == "ratio"
    changes = {s.labels["metric"]: s for s in families["ablab_change_ratio"].samples}
    assert changes["latency_p95_ms"].labels["verdict"] == "improved" and changes["latency_p95_ms"].value < 0
    met = {(s.labels["variant"], s.labels["metric"]): s.value for s in families["ablab_target_met"].samples}
    assert met[("optimized", "cost_reduction")] == 0.0 and met[("optimized", "latency_p95_ms")] == 1.0


def test_lab_export_writes_a_file_and_needs_an_analysis(
    analysed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "metrics.txt"
    monkeypatch.setattr(sys, "argv", ["lab", "export", str(analysed), "--format", "openmetrics", "--out", str(out)])
    main()
    assert list(text_string_to_metric_families(out.read_text()))
    monkeypatch.setattr(sys, "argv", ["lab", "export", str(GOLDEN)])  # the stored run has no analysis
    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == 2


def fake_proc(tmp_path: Path) -> Path:
    net = tmp_path / "proc" / "42" / "net"
    net.mkdir(parents=True)
    (net / "dev").write_text(
        "Inter-|   Receive\n face |bytes packets\n"
        "    lo:  999 1 0 0 0 0 0 0  999 1 0 0 0 0 0 0\n"
        "  eth0: 1000 2 0 0 0 0 0 0 2000 3 0 0 0 0 0 0\n"
    )
    return tmp_path / "proc"


def test_cgroup_v1_files_read_like_docker_stats(tmp_path: Path) -> None:
    from lab.collect.collector import CgroupProbe

    root = tmp_path / "cgroup"
    for controller, files in {
        "cpuacct": {"cpuacct.usage": "2500000000\n"},
        "memory": {"memory.usage_in_bytes": f"{100 * 2**20}\n", "memory.stat": f"total_inactive_file {30 * 2**20}\n"},
        "blkio": {"blkio.throttle.io_service_bytes": "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n"},
    }.items():
        folder = root / controller / "docker" / "abc"
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text)
    probe = CgroupProbe.find("abc", 42, root, fake_proc(tmp_path))
    assert probe is not None
    assert probe.read() == {
        "cpu_s": 2.5,
        "memory_mb": 70.0,
        "net_rx_bytes": 1000.0,
        "net_tx_bytes": 2000.0,
        "block_read_bytes": 4096.0,
        "block_write_bytes": 8192.0,
    }
    assert CgroupProbe.find("other", 42, root) is None  # not here: the collector uses the stats API


def test_cgroup_v2_files_read_like_docker_stats(tmp_path: Path) -> None:
    from lab.collect.collector import CgroupProbe

    folder = tmp_path / "cgroup" / "system.slice" / "docker-abc.scope"
    folder.mkdir(parents=True)
    (folder / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (folder / "memory.current").write_text(f"{100 * 2**20}\n")
    (folder / "memory.stat").write_text(f"anon 1\ninactive_file {30 * 2**20}\n")
    (folder / "io.stat").write_text("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n")
    probe = CgroupProbe.find("abc", 42, tmp_path / "cgroup", fake_proc(tmp_path))
    assert probe is not None
    reading = probe.read()
    assert (reading["cpu_s"], reading["memory_mb"], reading["block_read_bytes"]) == (2.5, 70.0, 4096.0)
