"""The layout is part of the design: every service has its image and its integration test."""

from pathlib import Path

from lab.config.services import DEFAULT_IMAGES
from lab.stack.services import SERVICES


def test_every_service_has_an_image_folder_and_an_integration_test(repo: Path) -> None:
    integration_sources = "\n".join(p.read_text() for p in (repo / "tests" / "integration").glob("test_*.py"))
    assert set(DEFAULT_IMAGES) == set(SERVICES)
    for kind in SERVICES:
        folder = DEFAULT_IMAGES[kind].removeprefix("ablab/")
        assert (repo / "images" / folder / "Dockerfile").exists(), f"images/{folder}/Dockerfile missing"
        assert f'"{kind}"' in integration_sources, f"no integration test mentions the {kind} service"


def test_every_package_of_the_flow_exists(repo: Path) -> None:
    for package in ("config", "stack", "services", "model", "loadgen"):
        assert (repo / "lab" / package / "__init__.py").exists()


def test_ci_runs_what_the_readme_says(repo: Path) -> None:
    assert "make test" in (repo / ".ci" / "run").read_text()
    readme = (repo / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
