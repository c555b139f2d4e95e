"""Running the `lab` command in-process, as a user would, and getting its exit status."""

from __future__ import annotations

import sys

import pytest

from lab.cli import main


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """`lab ARGS...` through the real entry point; its exit status (0 when it returns)."""
    monkeypatch.setattr(sys, "argv", ["lab", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
