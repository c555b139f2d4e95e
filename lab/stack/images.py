"""Build the lab's images offline, each tagged with a hash of its build context.

Every image under `images/<name>/` builds FROM a Debian bookworm base given as the build arg
BASE_IMAGE: `debian:bookworm-slim` when the engine has it or can pull it, otherwise a base we
make with debootstrap (mirror from the host's apt sources) and `docker import`. An image is
tagged `ablab/<name>:<hash>` where the hash covers its build context, the base image id and
the Python wheelhouse it installs from, so `build_images` rebuilds only what changed.
Images that need Python packages list them in `requirements.txt`; the wheels are downloaded
on the host (`pip download`) and copied into the context, so no build needs HTTPS. An image
that runs the lab's own service code lists repository paths in `include` (one per line, e.g.
`lab/services/`); they are copied into the context at the same relative paths and hashed too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from docker.models.images import Image

from lab.errors import ImageError

REPO_DIR = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO_DIR / "images"
CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache"
LAB_REPOSITORY = "ablab"
UPSTREAM_BASE = "debian:bookworm-slim"
BOOTSTRAPPED_BASE = "ablab/debian-base:bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CONTEXT_HASH_LABEL = "ablab.context-hash"
IGNORED_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache"}


@dataclass(frozen=True)
class ImageStatus:
    """One lab image: its wanted tag and whether the engine has it."""

    name: str
    tag: str
    present: bool


def lab_image_names() -> list[str]:
    """Every folder under images/ with a Dockerfile."""
    return sorted(p.parent.name for p in IMAGES_DIR.glob("*/Dockerfile"))


def is_lab_image(reference: str) -> bool:
    """True for `ablab/<name>` references that the lab builds itself (no explicit tag)."""
    repo, _, tag = reference.partition(":")
    owner, _, name = repo.partition("/")
    return owner == LAB_REPOSITORY and name in lab_image_names() and not tag


def context_hash(context: Path, extra: dict[str, str]) -> str:
    """SHA-256 over every file of a build context (path, exec bit, bytes) plus `extra`."""
    digest = hashlib.sha256()
    for path in sorted(_context_files(context)):
        relative = path.relative_to(context).as_posix()
        digest.update(relative.encode() + b"\0")
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(path.read_bytes() + b"\0")
    digest.update(json.dumps(extra, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def included_paths(image_dir: Path) -> list[str]:
    """Repository paths an image's `include` file asks to add to its build context."""
    include = image_dir / "include"
    if not include.exists():
        return []
    lines = (line.split("#", 1)[0].strip() for line in include.read_text().splitlines())
    return [line for line in lines if line]


def _context_files(context: Path) -> Iterator[Path]:
    for path in context.rglob("*"):
        ignored = IGNORED_NAMES & set(path.relative_to(context).parts)
        if path.is_file() and not ignored and path.suffix != ".pyc":
            yield path


def wanted_tag(client: docker.DockerClient, name: str, base_image: str) -> str:
    """The tag `ablab/<name>:<hash>` the current sources of image `name` should carry."""
    base_id = client.images.get(base_image).id
    extra = {"base_image_id": base_id}
    for relative in included_paths(IMAGES_DIR / name):
        extra[f"include:{relative}"] = (
            context_hash(REPO_DIR / relative, {})
            if (REPO_DIR / relative).is_dir()
            else (hashlib.sha256((REPO_DIR / relative).read_bytes()).hexdigest())
        )
    return f"{LAB_REPOSITORY}/{name}:{context_hash(IMAGES_DIR / name, extra)}"


def image_statuses(client: docker.DockerClient) -> list[ImageStatus]:
    """Which lab images are present for the current sources (without building anything)."""
    base = find_base_image(client, pull=False)
    statuses = []
    for name in lab_image_names():
        if base is None:
            statuses.append(ImageStatus(name, f"{LAB_REPOSITORY}/{name}:?", present=False))
            continue
        tag = wanted_tag(client, name, base)
        statuses.append(ImageStatus(name, tag, present=_has_image(client, tag)))
    return statuses


def resolve_image(client: docker.DockerClient, reference: str, build: bool = True) -> str:
    """Turn an experiment's image reference into a local image, building lab images as needed.

    `ablab/<name>` means the lab's own image for the current sources; anything else must be
    present locally or pullable.
    """
    if is_lab_image(reference):
        name = reference.split("/", 1)[1]
        base = find_base_image(client, pull=build) or (ensure_base_image(client) if build else None)
        if base is None:
            raise ImageError(f"no Debian base image for {reference}", hint="run `lab images build`")
        tag = wanted_tag(client, name, base)
        if not _has_image(client, tag):
            if not build:
                raise ImageError(f"image {tag} is not built", hint="run `lab images build`")
            build_image(client, name, base)
        return tag
    if _has_image(client, reference):
        return reference
    try:
        client.images.pull(reference)
    except docker.errors.DockerException as exc:
        raise ImageError(
            f"image {reference} is not present and cannot be pulled: {_short(exc)}",
            hint=f"load it with `docker load`, or use the lab's own image (ablab/{reference.split(':')[0]})",
        ) from None
    return reference


def build_images(client: docker.DockerClient, names: list[str] | None = None, log: bool = True) -> list[str]:
    """Build every (or the named) lab image whose context changed; return their tags."""
    base = ensure_base_image(client, log=log)
    tags = []
    for name in names or lab_image_names():
        if name not in lab_image_names():
            raise ImageError(f"unknown image {name!r}", hint=f"known: {', '.join(lab_image_names())}")
        tag = wanted_tag(client, name, base)
        if _has_image(client, tag):
            _say(log, f"{tag} is up to date")
        else:
            _say(log, f"building {tag}")
            build_image(client, name, base)
        tags.append(tag)
    return tags


def build_image(client: docker.DockerClient, name: str, base_image: str) -> str:
    """Build one image from images/<name>/ on `base_image`; raise ImageError with the log tail."""
    tag = wanted_tag(client, name, base_image)
    source = IMAGES_DIR / name
    with tempfile.TemporaryDirectory(prefix=f"ablab-build-{name}-") as tmp:
        context = Path(tmp) / name
        ignore = shutil.ignore_patterns(*IGNORED_NAMES, "*.pyc")
        shutil.copytree(source, context, ignore=ignore)
        for relative in included_paths(source):
            origin, target = REPO_DIR / relative, context / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=ignore)
            else:
                shutil.copy2(origin, target)
        requirements = context / "requirements.txt"
        if requirements.exists():
            shutil.copytree(build_wheelhouse(requirements, client), context / "wheelhouse")
        else:
            (context / "wheelhouse").mkdir()
        log_lines: list[str] = []
        try:
            for chunk in client.api.build(
                path=str(context),
                tag=tag,
                buildargs={"BASE_IMAGE": base_image},
                labels={CONTEXT_HASH_LABEL: tag.rsplit(":", 1)[1]},
                rm=True,
                forcerm=True,
                decode=True,
            ):
                if "stream" in chunk:
                    log_lines.extend(chunk["stream"].rstrip().splitlines())
                if "error" in chunk:
                    tail = " | ".join(line.strip() for line in log_lines[-4:] if line.strip())
                    raise ImageError(
                        f"building image {name} failed: {chunk['error'].strip()} (last output: {tail})",
                        hint=f"see images/{name}/Dockerfile",
                    )
        except docker.errors.DockerException as exc:
            raise ImageError(f"building image {name} failed: {_short(exc)}") from None
    client.images.get(tag).tag(f"{LAB_REPOSITORY}/{name}", "latest")
    return tag


def build_wheelhouse(requirements: Path, client: docker.DockerClient) -> Path:
    """Download the wheels an image needs on the host, cached by the requirements' hash."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    wheelhouse = CACHE_DIR / "wheelhouse" / digest
    if (wheelhouse / ".complete").exists():
        return wheelhouse
    arch = str(client.info().get("Architecture", "x86_64"))
    arch = {"aarch64": "aarch64", "arm64": "aarch64"}.get(arch, "x86_64")
    platforms = [f"manylinux2014_{arch}", f"manylinux_2_28_{arch}", f"manylinux_2_17_{arch}", "any"]
    shutil.rmtree(wheelhouse, ignore_errors=True)
    wheelhouse.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    command += ["--python-version", "3.11", "--implementation", "cp", "-d", str(wheelhouse), "-r", str(requirements)]
    for platform in platforms:
        command += ["--platform", platform]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-2:])
        raise ImageError(f"downloading wheels for {requirements} failed: {tail}")
    (wheelhouse / ".complete").write_text("ok\n")
    return wheelhouse


def find_base_image(client: docker.DockerClient, pull: bool) -> str | None:
    """The Debian bookworm base to build on, if one is present (or pullable when `pull`)."""
    forced = os.environ.get("LAB_BASE_IMAGE")
    for candidate in [forced] if forced else [UPSTREAM_BASE, BOOTSTRAPPED_BASE]:
        if _has_image(client, candidate):
            return candidate
    if pull and not forced:
        try:
            client.images.pull(UPSTREAM_BASE)
            return UPSTREAM_BASE
        except docker.errors.DockerException:
            return None
    return None


def ensure_base_image(client: docker.DockerClient, log: bool = True) -> str:
    """Find or make the base image: pull debian:bookworm-slim, else debootstrap one."""
    found = find_base_image(client, pull=True)
    if found:
        return found
    if os.environ.get("LAB_BASE_IMAGE"):
        raise ImageError(f"LAB_BASE_IMAGE={os.environ['LAB_BASE_IMAGE']} is not present")
    _say(log, f"{UPSTREAM_BASE} cannot be pulled; bootstrapping {BOOTSTRAPPED_BASE} with debootstrap")
    bootstrap_base_image(client)
    return BOOTSTRAPPED_BASE


def bootstrap_base_image(client: docker.DockerClient) -> None:
    """debootstrap a minimal bookworm and `docker import` it as BOOTSTRAPPED_BASE."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise ImageError(
                f"{UPSTREAM_BASE} cannot be pulled and debootstrap is not installed",
                hint="install debootstrap, or load a Debian bookworm image and set LAB_BASE_IMAGE",
            )
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"], "install debootstrap")
    mirror = host_debian_mirror()
    with tempfile.TemporaryDirectory(prefix="ablab-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run([debootstrap, "--variant=minbase", "bookworm", str(rootfs), mirror], "debootstrap")
        # As in Docker's official Debian images: services never start at install time,
        # and apt keeps no caches inside image layers.
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(
            'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\nAcquire::Languages "none";\n'
        )
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            client.api.import_image_from_data(
                tar.stdout.read(),
                repository=BOOTSTRAPPED_BASE.split(":")[0],
                tag=BOOTSTRAPPED_BASE.split(":")[1],
                changes=['CMD ["/bin/bash"]', "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            )
        finally:
            tar.wait()
    if not _has_image(client, BOOTSTRAPPED_BASE):
        raise ImageError(f"docker import of {BOOTSTRAPPED_BASE} did not produce an image")


def host_debian_mirror(sources: list[Path] | None = None) -> str:
    """The Debian mirror the host's apt uses for bookworm main (deb822 or one-line format)."""
    if sources is None:
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in _bookworm_uris(text):
            if "security" not in uri and re.search(r"/debian/?$", uri):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _bookworm_uris(text: str) -> Iterator[str]:
    # One-line format: "deb [opts] URI bookworm main"
    for line in text.splitlines():
        match = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s", line)
        if match:
            yield match.group(1)
    # deb822 format: stanzas with "URIs:" and "Suites:"
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(
            (key.strip().lower(), value.strip())
            for key, _, value in (line.partition(":") for line in stanza.splitlines() if not line.startswith("#"))
        )
        if "bookworm" in fields.get("suites", "").split() and fields.get("uris"):
            yield from fields["uris"].split()


def _has_image(client: docker.DockerClient, reference: str) -> bool:
    try:
        image: Image = client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return bool(image.id)


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise ImageError(f"{what} failed with status {result.returncode}: {tail}")


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(f"lab: {message}", flush=True)
