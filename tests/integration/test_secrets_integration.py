"""No secret leaves the stack: the Postgres password is in no file of a run's bundle (samples,
trials, analysis, reports, logs, manifest) and in nothing the lab printed."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

from tests.conftest import REPO, run_lab

PASSWORD = "S3cret-marker-7f2c9d41a8"


def test_the_postgres_password_is_in_no_file_of_the_bundle_and_not_printed(tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = {"LAB_RESULTS_DIR": str(results), "LAB_POSTGRES_PASSWORD": PASSWORD}
    result = run_lab(
        "run", str(REPO / "experiments" / "database.toml"), "--quick", "--duration", "3", "--progress", "plain",
        env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    (run,) = [p for p in results.iterdir() if p.is_dir()]
    made = run_lab("bundle", str(run), env=env, timeout=120)
    assert made.returncode == 0, made.stderr
    bundle = results / f"{run.name}.tar.gz"
    needle = PASSWORD.encode()
    checked = 0
    with tarfile.open(bundle) as archive:
        for member in archive.getmembers():
            handle = archive.extractfile(member)
            if handle is None:
                continue
            data = handle.read()
            assert needle not in data, member.name
            checked += 1
    assert checked > 10
    assert needle not in gzip.decompress(bundle.read_bytes())  # the archive as a whole, headers included
    # the password did reach the stack: the trial's DSN used it (masked in what was written)
    trial = next((run / "trials").glob("*/trial.json")).read_text()
    assert "***" in trial
