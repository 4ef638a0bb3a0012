"""Load and measurement clients for the benchmark: blob downloads (curl), manifest HEAD latency,
token requests per second (wrk), and a process's peak memory (VmHWM).

Clients are real programs where they are faster than the servers they measure (curl, wrk), so the
client is never the bottleneck; the HEAD loop is Python because it measures per-request latency on
one keep-alive connection, the same client for every variant.
"""

from __future__ import annotations

import hashlib
import http.client
import random
import re
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .processes import require_binary

MiB = 1024 * 1024


# -- blobs ------------------------------------------------------------------------------------


def write_blob_file(path: Path, size: int, seed: int) -> str:
    """`size` pseudo-random bytes (uncompressible, quick to make); returns the sha256 digest."""
    block = random.Random(seed).randbytes(4 * MiB)
    sha = hashlib.sha256()
    with open(path, "wb") as f:
        written, index = 0, 0
        while written < size:
            # Each block starts with its index, so no two blocks of a blob are identical.
            data = (index.to_bytes(8, "big") + block[8:])[: size - written]
            f.write(data)
            sha.update(data)
            written += len(data)
            index += 1
    return f"sha256:{sha.hexdigest()}"


def upload_blob(registry_url: str, repository: str, path: Path, digest: str, headers: dict[str, str] | None = None) -> None:
    """Push one blob monolithically (POST an upload, PUT the bytes streamed from the file)."""
    parts = urlsplit(registry_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600, blocksize=MiB)
    try:
        conn.request("POST", f"/v2/{repository}/blobs/uploads/", headers=headers or {})
        answer = conn.getresponse()
        answer.read()
        if answer.status != 202:
            raise RuntimeError(f"blob upload refused: {answer.status}")
        location = answer.getheader("Location") or ""
        target = urlsplit(location)
        query = f"{target.query}&digest={digest}" if target.query else f"digest={digest}"
        size = path.stat().st_size
        with open(path, "rb") as body:
            conn.request("PUT", f"{target.path}?{query}", body=body, headers={**(headers or {}), "Content-Length": str(size), "Content-Type": "application/octet-stream"})
            answer = conn.getresponse()
            answer.read()
        if answer.status != 201:
            raise RuntimeError(f"blob upload failed: {answer.status}")
    finally:
        conn.close()


# -- process memory ---------------------------------------------------------------------------


def reset_peak_rss(pid: int) -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) of a process we started (Linux >= 4.0)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmHWM") / 1024


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


# -- downloads --------------------------------------------------------------------------------


@dataclass
class Transfer:
    status: int
    size: int
    seconds: float


def curl_fetch(url: str, headers: dict[str, str] | None = None, follow: bool = True) -> Transfer:
    """GET `url` into /dev/null with curl; the body is counted, never kept."""
    args = [require_binary("curl"), "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}"]
    if follow:
        args.append("-L")
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=900, check=True).stdout.split()
    return Transfer(int(out[0]), int(out[1]), float(out[2]))


def curl_parallel(url: str, count: int, headers: dict[str, str] | None = None) -> tuple[list[Transfer], float]:
    """`count` simultaneous GETs of `url` from one curl process; returns transfers and wall time."""
    args = [require_binary("curl"), "-s", "-L", "-Z", "--parallel-immediate", "--parallel-max", str(count), "-w", "%{http_code} %{size_download} %{time_total}\n"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    for _ in range(count):
        args += [url, "-o", "/dev/null"]
    started = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, timeout=900, check=True).stdout
    wall = time.perf_counter() - started
    transfers = [Transfer(int(a), int(b), float(c)) for a, b, c in (line.split() for line in out.splitlines() if line.strip())]
    return transfers, wall


# -- latency ----------------------------------------------------------------------------------


def head_latencies(targets: list[tuple[str, dict[str, str]]], count: int, warmup: int = 20) -> list[list[float]]:
    """Milliseconds per HEAD for each (url, headers) target: `count` requests each, one keep-alive
    connection per target, taken in turns (A B C, B C A, ...) so every target sees the same
    moments of a busy machine."""
    connections = []
    for url, headers in targets:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connections.append((http.client.HTTPConnection(parts.hostname, parts.port, timeout=30), path, headers, url))
    timings: list[list[float]] = [[] for _ in targets]
    try:
        for index in range(warmup + count):
            shift = index % len(connections)
            for slot in [*range(shift, len(connections)), *range(shift)]:
                conn, path, headers, url = connections[slot]
                started = time.perf_counter()
                conn.request("HEAD", path, headers=headers)
                answer = conn.getresponse()
                answer.read()
                elapsed = (time.perf_counter() - started) * 1000
                if answer.status != 200:
                    raise RuntimeError(f"HEAD {url} answered {answer.status}")
                if index >= warmup:
                    timings[slot].append(elapsed)
    finally:
        for conn, *_ in connections:
            conn.close()
    return timings


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- requests per second ----------------------------------------------------------------------

_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_BAD = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)|Socket errors:.*")


def requests_per_second(url: str, seconds: int, connections: int, headers: dict[str, str] | None = None) -> float:
    """Requests per second from wrk (HTTP/1.1 keep-alive, one thread); every answer must be a 2xx."""
    args = [require_binary("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = _WRK_RPS.search(out)
    if not rps or _WRK_BAD.search(out):
        raise RuntimeError(f"wrk against {url} failed:\n{out[-1500:]}")
    return float(rps.group(1))
