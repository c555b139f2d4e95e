import os
from pathlib import Path

from lab.stack.images import context_hash, host_debian_mirror, is_lab_image, lab_image_names


def make_context(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM x\n")
    (root / "sub" / "run.sh").write_text("echo hi\n")
    return root


def test_context_hash_is_stable_and_sees_every_change(tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx")
    first = context_hash(context, {"base_image_id": "sha256:a"})
    assert context_hash(context, {"base_image_id": "sha256:a"}) == first
    assert context_hash(context, {"base_image_id": "sha256:b"}) != first  # new base -> rebuild
    (context / "sub" / "run.sh").chmod(0o755)
    after_chmod = context_hash(context, {"base_image_id": "sha256:a"})
    assert after_chmod != first
    (context / "sub" / "run.sh").write_text("echo bye\n")
    assert context_hash(context, {"base_image_id": "sha256:a"}) != after_chmod


def test_context_hash_ignores_caches(tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx")
    before = context_hash(context, {})
    (context / "__pycache__").mkdir()
    (context / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    (context / "x.pyc").write_bytes(b"\0")
    assert context_hash(context, {}) == before


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    assert host_debian_mirror([sources]) == "http://mirror.example/debian"


def test_mirror_from_one_line_sources_skips_other_repositories(tmp_path: Path) -> None:
    other = tmp_path / "other.list"
    other.write_text("deb https://packages.example.com/apt cloud-sdk-bookworm main\n")
    classic = tmp_path / "sources.list"
    classic.write_text("# comment\ndeb [arch=amd64] http://ftp.example.org/debian/ bookworm main contrib\n")
    assert host_debian_mirror([other, classic]) == "http://ftp.example.org/debian"


def test_mirror_falls_back_to_deb_debian_org(tmp_path: Path) -> None:
    assert host_debian_mirror([tmp_path / "missing"]) == "http://deb.debian.org/debian"


def test_lab_images_and_references() -> None:
    assert {"postgres", "redis"} <= set(lab_image_names())
    assert is_lab_image("ablab/postgres")
    assert not is_lab_image("ablab/postgres:16")  # an explicit tag is taken as given
    assert not is_lab_image("postgres:16")
    assert not is_lab_image("ablab/nosuch")


def test_entrypoint_is_executable(repo: Path) -> None:
    assert os.access(repo / "images" / "postgres" / "docker-entrypoint.sh", os.X_OK)
