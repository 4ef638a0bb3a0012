"""Benchmark `authmirror report` on a big pull log (default 1,000,000 events).

Writes a realistic log (skopeo and containerd pulls of several images and versions by 50
customers, refused and unlicensed pulls, 401 challenges) over 30 days, rotated by the mirror's
own PullLog (100 MiB files), then runs `authmirror report` as a user would, in a child process:
table, json and html, plus 1/10 of the log to show memory stays flat. The baseline, measured in
the same run, is the floor any report pays: reading the files and parsing every line as JSON.
CPU seconds are given next to wall seconds: on a shared machine they move much less.

    .venv/bin/python scripts/bench_report.py [--events 1000000] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from authmirror.config import LogRotation  # noqa: E402
from authmirror.logreader import ReadStats, log_files, read_events  # noqa: E402
from authmirror.pulllog import PullLog, utc_timestamp  # noqa: E402
from tests.support.pullevents import Image, LogBuilder  # noqa: E402

DAYS = 30
CUSTOMERS = 50


def pull_cycle(seed: int = 7) -> list[dict]:
    """One round of client behaviour; the big log repeats it with shifted times."""
    rng = random.Random(seed)
    images = [Image(repository=f"vendor/{name}", layers=tuple(rng.randint(10_000, 80_000_000) for _ in range(rng.randint(2, 6)))) for name in ("app", "db", "worker", "ui", "cli")]
    versions = ["1.0", "1.1", "1.2", "2.0", "2.1"]
    builder = LogBuilder()
    for index in range(CUSTOMERS):
        license, customer = f"bench-license-{index:04d}", f"Customer {index:02d}"
        for _ in range(4):
            image = rng.choice(images)
            tag = versions[min(len(versions) - 1, index % 5 + rng.randint(0, 1))]
            if rng.random() < 0.5:
                builder.containerd_pull(license, customer, image, tag)
            else:
                builder.skopeo_pull(license, customer, image, tag, platforms=rng.choice((0, 0, 2)))
            builder.advance(rng.uniform(1, 30))
        if index % 7 == 0:
            builder.refused_pull(license, customer, images[0], "1.0", "DENIED", f"license for {customer} expired on 2026-10-31")
        if index % 11 == 0:
            builder.unknown_license_pull(images[0], "1.0", client_ip=f"10.9.0.{index}")
    return builder.events


def write_log(path: Path, events: int) -> float:
    """`events` pull events through the mirror's PullLog (rotated at 100 MiB); returns seconds."""
    cycle = pull_cycle()
    start = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc).timestamp()
    spread = DAYS * 86400 / max(1, events // len(cycle))
    log = PullLog(path, LogRotation(max_size=100 * 1024 * 1024, keep=1000))
    log.open()
    began = time.perf_counter()
    written, round_index = 0, 0
    cycle_start = dt.datetime.fromisoformat(cycle[0]["ts"]).timestamp()
    offsets = [dt.datetime.fromisoformat(e["ts"]).timestamp() - cycle_start for e in cycle]
    while written < events:
        base = start + round_index * spread
        for event, offset in zip(cycle, offsets):
            if written >= events:
                break
            line = {**event, "ts": utc_timestamp(base + offset), "request_id": uuid.uuid4().hex[:16]}
            log.write(_Line(line))
            written += 1
        round_index += 1
    log.close()
    return time.perf_counter() - began


class _Line:
    """What PullLog.write needs from an event: its JSON and its request id."""

    def __init__(self, data: dict):
        self.data = data
        self.request_id = data["request_id"]

    def to_json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"))


def parse_floor(path: Path) -> tuple[float, float, int]:
    """Baseline: read every file and parse every line, nothing else. (wall s, CPU s, events)"""
    began, cpu = time.perf_counter(), time.process_time()
    count = sum(1 for _ in read_events([log_files(path)], ReadStats()))
    return time.perf_counter() - began, time.process_time() - cpu, count


# Runs a command and reports its peak RSS (KiB) and CPU seconds on stderr: figures of that run alone.
MEASURE = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(r.returncode)"
)


def run_report(log: Path, *extra: str) -> tuple[float, float, int, str]:
    """`authmirror report` in its own process, as a user runs it: wall s, CPU s, peak RSS (KiB), stdout."""
    command = [str(Path(sys.executable).parent / "authmirror"), "report", "--log", str(log), *extra]
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"report failed: {done.stderr}")
    peak, cpu = done.stderr.strip().splitlines()[-1].split()
    return took, float(cpu), int(peak), done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        small, big = work / "small" / "pulls.jsonl", work / "big" / "pulls.jsonl"
        wrote = write_log(big, args.events)
        write_log(small, args.events // 10)
        files = log_files(big)
        size = sum(f.stat().st_size for f in files)
        print(f"log: {args.events:,} events, {len(files)} files, {size / 2**20:,.0f} MiB (written by PullLog in {wrote:.1f} s)")
        floor, floor_cpu, count = parse_floor(big)
        assert count == args.events, (count, args.events)
        print(f"baseline (read + parse every line, in-process): {floor:.2f} s wall, {floor_cpu:.2f} s CPU, {count / floor_cpu:,.0f} events per CPU second")
        print(f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: CPU seconds are steadier than wall seconds when shared")
        rows = []
        for label, log, extra in (
            ("table, 1/10 of the log", small, ("--format", "table")),
            ("table", big, ("--format", "table")),
            ("json", big, ("--format", "json")),
            ("csv --by day", big, ("--format", "csv", "--by", "day")),
            ("html", big, ("--format", "html", "-o", str(work / "report.html"))),
            ("table --since (last 7 of 30 days)", big, ("--since", "2026-10-24", "--format", "table")),
        ):
            took, cpu, peak_kib, out = run_report(log, *extra)
            rows.append((label, took, cpu, peak_kib))
            if label == "table":
                summary = out.splitlines()[:2]
        print("\n| report | wall s | CPU s | CPU × baseline | events per CPU s | peak RSS |\n|---|---|---|---|---|---|")
        for label, took, cpu, peak in rows:
            events = args.events // 10 if "1/10" in label else args.events
            print(f"| {label} | {took:.2f} | {cpu:.2f} | {cpu / floor_cpu:.2f}× | {events / cpu:,.0f} | {peak / 1024:.0f} MiB |")
        print("\n" + "\n".join(summary))
        print(f"\nhtml page: {(work / 'report.html').stat().st_size / 1024:.0f} KiB")
    finally:
        if args.keep:
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
