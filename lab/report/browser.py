"""Open a report in headless Chromium and read back what its check script found.

`report.html` carries a small script (lab.report.html) that, once the page has loaded, counts the
`svg.plot` elements and those with a non-empty bounding box, and records script errors - all as
attributes of `<body>`. Chromium's `--dump-dom` prints the DOM after load, so those attributes
are the browser's own verdict; its console log (stderr) is searched for errors as well.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from lab.errors import LabError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CONSOLE_ERROR = re.compile(r"error|uncaught", re.IGNORECASE)


@dataclass
class BrowserCheck:
    """What the page reported once loaded in the browser."""

    plots: int
    rendered: int  # plots whose bounding box is not empty
    errors: list[str] = field(default_factory=list)  # recorded by the page (window.onerror, console.error)
    console_errors: list[str] = field(default_factory=list)  # error lines of the browser's console log

    @property
    def ok(self) -> bool:
        return not self.errors and not self.console_errors and self.plots == self.rendered


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) on PATH, or None."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


class BodyAttributes(HTMLParser):
    """The attributes of the first `<body>` tag of a document."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and self.found is None:
            self.found = {name: value or "" for name, value in attrs}


def body_attributes(dom: str) -> dict[str, str]:
    parser = BodyAttributes()
    parser.feed(dom)
    parser.close()
    return parser.found or {}


def console_errors(log: str) -> list[str]:
    """The browser console's messages that are errors: Chromium logs them as `...:CONSOLE...] "message"`."""
    return [line.strip() for line in log.splitlines() if "CONSOLE" in line and CONSOLE_ERROR.search(line)]


def parse_dump(dom: str, log: str) -> BrowserCheck:
    """The check from Chromium's dumped DOM and its stderr."""
    attributes = body_attributes(dom)
    errors = [line for line in attributes.get("data-errors", "").splitlines() if line.strip()]
    if "data-plots" not in attributes:
        errors.append("the page's check script did not run: <body> has no data-plots attribute")
    try:
        plots = int(attributes.get("data-plots", "0"))
        rendered = int(attributes.get("data-plots-rendered", "0"))
    except ValueError:
        errors.append(f"unreadable plot counts on <body>: {attributes}")
        plots = rendered = 0
    return BrowserCheck(plots, rendered, errors, console_errors(log))


def check_in_browser(html: Path, timeout_s: float = 60) -> BrowserCheck:
    """Load `html` in headless Chromium and return what the page's check script recorded."""
    browser = find_chromium()
    if browser is None:
        raise LabError(
            "no Chromium found (looked for " + ", ".join(BROWSERS) + ") to check the report in",
            hint="make setup installs it; or apt-get install chromium",
        )
    with tempfile.TemporaryDirectory(prefix="ablab-chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            html.resolve().as_uri(),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise LabError(f"{browser} did not finish loading {html} within {timeout_s:g} s") from None
    if result.returncode != 0 or "<body" not in result.stdout:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise LabError(f"{browser} could not load {html} (exit {result.returncode}): {tail}")
    return parse_dump(result.stdout, result.stderr)
