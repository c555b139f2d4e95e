"""Reports from a stored run: report.md against a stored expected file, junit.xml, the manifest,
bundles and their verification, and the exit codes of `lab analyze` / `lab compare`."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from lab.analysis.runs import analyze_run
from lab.commands.analyze import analyze_and_write
from lab.report.bundle import create_bundle, verify_bundle
from lab.report.junit import render_junit
from lab.report.manifest import check_files, manifest_intact, write_manifest
from lab.report.markdown import render_markdown
from tests.support.cli import run_cli

DATA = Path(__file__).resolve().parents[1] / "data" / "analysis"
GOLDEN = DATA / "golden-run"
EXPECTED_MD = DATA / "golden-report.md"
PASSING_TARGETS = "\n[targets]\ndefaults = false\nlatency_p95_ms = { below = 1000 }\n"


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    return Path(shutil.copytree(GOLDEN, tmp_path / "golden-run"))


def test_report_md_matches_the_stored_expected_file() -> None:
    assert render_markdown(GOLDEN, analyze_run(GOLDEN)) == EXPECTED_MD.read_text()


def test_report_md_puts_the_verdict_first_then_targets_comparison_and_diff() -> None:
    text = EXPECTED_MD.read_text()
    assert text.startswith("### ❌ fail · golden · **optimized** vs baseline: 3 improved, 0 regressed")
    order = [text.index(h) for h in ("#### Targets", "#### Headline comparison", "#### What differs", "<details>")]
    assert order == sorted(order)
    assert "| `workload.crm_pool` | `5` | `20` |" in text


def test_junit_has_a_case_per_target_and_per_regression_check() -> None:
    analysis = analyze_run(GOLDEN)
    root = ET.fromstring(render_junit([analysis], "golden-run"))
    cases = root.findall(".//testcase")
    assert len(cases) == len(analysis.targets) + len(analysis.comparisons)
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"optimized.cost_reduction"}
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert skipped == []  # the baseline met its target: nothing to skip
    assert root.get("tests") == str(len(cases)) and root.get("failures") == "1"


def test_manifest_lists_every_file_and_protects_itself(golden: Path) -> None:
    analyze_and_write(golden, None, echo=False)
    manifest = json.loads((golden / "manifest.json").read_text())
    files = set(manifest["files"])
    assert {"experiment.toml", "config.json", "trials.parquet", "report.md", "report.html", "junit.xml"} <= files
    assert any(name.endswith("samples-w0.parquet") for name in files)
    assert manifest["experiment"]["sha256"] == manifest["files"]["experiment.toml"]["sha256"]
    assert manifest["seeds"]["run"] is None or isinstance(manifest["seeds"]["run"], int)
    assert check_files(golden) == []
    data = (golden / "manifest.json").read_bytes()
    assert manifest_intact(data)
    assert not manifest_intact(data.replace(b'"lab_version": "', b'"lab_version": "9', 1))


def test_facts_given_once_survive_a_later_refresh(golden: Path) -> None:
    write_manifest(golden, {"started": "2026-12-04T00:00:00Z", "engine": {"version": "20.10.24"}})
    write_manifest(golden)
    manifest = json.loads((golden / "manifest.json").read_text())
    assert manifest["started"] == "2026-12-04T00:00:00Z" and manifest["engine"]["version"] == "20.10.24"


def retarred(bundle: Path, change: str, edit: bytes | None, work: Path) -> Path:
    """The bundle unpacked, one file edited (or removed when `edit` is None), packed again."""
    unpacked = work / "unpacked"
    with tarfile.open(bundle) as archive:
        archive.extractall(unpacked, filter="data")
    (run,) = unpacked.iterdir()
    target = run / change
    if edit is None:
        target.unlink()
    elif not target.exists():
        target.write_bytes(edit)
    else:
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= edit[0]
        target.write_bytes(bytes(data))
    out = work / "tampered.tar.gz"
    with tarfile.open(out, "w:gz") as archive:
        archive.add(run, arcname=run.name)
    return out


@pytest.mark.parametrize(
    "name", ["manifest.json", "report.md", "trials.parquet", "trials/00-baseline/samples-w0.parquet", "config.json"]
)
def test_one_changed_byte_in_any_file_fails_verification_naming_it(
    golden: Path, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    analyze_and_write(golden, None, echo=False)
    bundle = create_bundle(golden)
    assert verify_bundle(bundle)[0] == "golden-run"
    assert run_cli(monkeypatch, "bundle", "verify", str(bundle)) == 0
    tampered = retarred(bundle, name, b"\x01", tmp_path / "work")
    capsys.readouterr()
    assert run_cli(monkeypatch, "bundle", "verify", str(tampered)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f": {name}: changed" in err[0], err


def test_a_missing_or_extra_file_fails_verification(golden: Path, tmp_path: Path) -> None:
    from lab.errors import BundleInvalid

    analyze_and_write(golden, None, echo=False)
    bundle = create_bundle(golden)
    with pytest.raises(BundleInvalid, match=r"report\.html: missing"):
        verify_bundle(retarred(bundle, "report.html", None, tmp_path / "a"))
    with pytest.raises(BundleInvalid, match=r"extra\.txt: not in the manifest"):
        verify_bundle(retarred(bundle, "extra.txt", b"slipped in", tmp_path / "b"))


def test_a_bundle_is_never_overwritten_and_a_corrupt_one_is_one_line(
    golden: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = create_bundle(golden)
    assert run_cli(monkeypatch, "bundle", str(golden)) == 2
    assert "exists already" in capsys.readouterr().err
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(bundle.read_bytes()[:200])
    assert run_cli(monkeypatch, "bundle", "verify", str(broken)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable bundle" in err[0]


def test_compare_of_two_bundles_gives_the_verdicts_of_their_runs(golden: Path, tmp_path: Path) -> None:
    from lab.analysis.runs import compare_runs

    other = Path(shutil.copytree(golden, tmp_path / "other" / "golden-run"))
    direct, _ = compare_runs(golden, other)
    bundles = [create_bundle(golden, tmp_path / "a.tar.gz"), create_bundle(other, tmp_path / "b.tar.gz")]
    from lab.report.bundle import as_run_directory

    with as_run_directory(bundles[0]) as a, as_run_directory(bundles[1]) as b:
        via_bundles, _ = compare_runs(a, b)
    assert [c.verdict for x in direct for c in x.comparisons] == [c.verdict for x in via_bundles for c in x.comparisons]
    assert [c.change for x in direct for c in x.comparisons] == [c.change for x in via_bundles for c in x.comparisons]
    # and the analysis re-run from a bundle is the run's own
    with as_run_directory(bundles[0]) as a:
        again = analyze_run(a)
    original = analyze_run(golden)
    assert [(c.metric, c.verdict, c.low, c.high) for c in again.comparisons] == [
        (c.metric, c.verdict, c.low, c.high) for c in original.comparisons
    ]


def test_exit_0_when_every_target_is_met_and_nothing_regressed(golden: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (golden / "experiment.toml").open("a") as handle:
        handle.write(PASSING_TARGETS)
    assert run_cli(monkeypatch, "analyze", str(golden)) == 0
    assert json.loads((golden / "analysis" / "analysis.json").read_text())["grades"]["optimized"]["grade"] == "A+"


def test_exit_1_on_a_regression(
    golden: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # swap the variants' names: the faster one becomes the baseline, so the other regressed
    config = json.loads((golden / "config.json").read_text())
    (golden / "config.json").write_text(json.dumps(config | {"baseline": "optimized"}))
    with (golden / "experiment.toml").open("a") as handle:
        handle.write(PASSING_TARGETS)
    assert run_cli(monkeypatch, "analyze", str(golden)) == 1
    err = capsys.readouterr().err
    assert "baseline: latency_p95_ms regressed" in err
    junit = ET.parse(golden / "junit.xml").getroot()
    assert junit.get("failures") != "0"


def test_exit_2_for_a_path_that_is_not_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli(monkeypatch, "report", "/nonexistent") == 2
    assert run_cli(monkeypatch, "bundle", "/nonexistent") == 2
    assert run_cli(monkeypatch, "bundle", "verify", "/nonexistent.tar.gz") == 2


def test_a_full_disk_is_one_clear_error_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from lab.errors import WriteError
    from lab.files import write_atomic

    target = tmp_path / "status.json"
    target.write_text('{"state": "running"}')

    def no_space(_: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(WriteError, match=r"cannot write .*status\.json: No space left on device"):
        write_atomic(target, b'{"state": "complete"}')
    assert target.read_text() == '{"state": "running"}'  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]  # no temporary left


def test_an_unwritable_results_folder_is_one_clear_error(tmp_path: Path) -> None:
    from lab.errors import LabError
    from lab.report.rundir import RunDirectory

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LabError, match="cannot create a run directory"):
        RunDirectory.create("x", blocker / "results")


def test_gc_marks_a_run_whose_process_was_killed_and_leaves_live_ones(tmp_path: Path) -> None:
    import subprocess
    from dataclasses import asdict

    from lab.report.rundir import RunDirectory, mark_abandoned
    from lab.stack.ownership import Owner

    live = RunDirectory(tmp_path / "live", "live")
    live.path.mkdir()
    live.set_status("running", trials_done=1)
    dead = RunDirectory(tmp_path / "dead", "dead")
    dead.path.mkdir()
    child = subprocess.Popen(["sleep", "0"])
    owner = Owner(pid=child.pid, start_ticks="1", host=Owner.current().host, boot_id=Owner.current().boot_id)
    child.wait()
    dead.write_json("status.json", {"state": "running", "trials_done": 2, "owner": asdict(owner)})
    assert mark_abandoned(tmp_path) == [dead.path]
    status = json.loads((dead.path / "status.json").read_text())
    assert status["state"] == "interrupted" and status["trials_done"] == 2 and "killed" in status["reason"]
    assert json.loads((live.path / "status.json").read_text())["state"] == "running"
