"""Every file of the bad-experiment corpus fails with its expected one-line error and exit 2.

Each file's first line says what the error must contain (`# expect: ...`). The engine is a
dead socket: the mistakes must be caught before any container (or engine) is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lab.cli import main

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad_experiments"
FILES = sorted(CORPUS.glob("*.toml"))


def test_the_corpus_has_at_least_twenty_files() -> None:
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_experiment_is_one_line_and_exit_2(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/dead.sock")
    monkeypatch.setattr(sys, "argv", ["lab", "run", str(path)])
    with pytest.raises(SystemExit) as caught:
        main()
    captured = capsys.readouterr()
    assert caught.value.code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"lab: error: {path}"), lines[0]
    assert expected in lines[0]
    assert "Traceback" not in captured.err + captured.out
