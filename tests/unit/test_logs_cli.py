"""`authmirror logs`: the latest events readably, filtered, and followed across log rotations."""

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from authmirror.cli.main import main
from authmirror.config import LogRotation
from authmirror.pulllog import PullEvent, PullLog

from .test_reports import scenario


def test_tail_is_readable(tmp_path, capsys):
    path = scenario().write(tmp_path / "pulls.jsonl")
    assert main(["logs", "--log", str(path), "-n", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[-1].startswith("2026-11-02 09:04:")
    assert "(unknown license)  GET token acme/vendor/vendor/app  401 UNAUTHORIZED: unknown license" in lines[-1]
    assert main(["logs", "--log", str(path), "-n", "100"]) == 0
    everything = capsys.readouterr().out
    assert "Globex Corp  GET manifest acme/vendor/vendor/app:1.0  200 500 B 3 ms" in everything
    assert "HEAD manifest acme/vendor/vendor/app:1.1  401 challenge (no license yet)" in everything
    assert "GET blob acme/vendor/vendor/app@sha256:" in everything


def test_failed_and_customer_filters(tmp_path, capsys):
    path = scenario().write(tmp_path / "pulls.jsonl")
    assert main(["logs", "--log", str(path), "-n", "100", "--failed"]) == 0
    failed = capsys.readouterr().out.splitlines()
    assert len(failed) == 7  # Hooli's six refused token requests and the unknown license; no challenges
    assert all("DENIED: license for Hooli expired" in line or "unknown license" in line for line in failed)
    assert main(["logs", "--log", str(path), "-n", "100", "--customer", "initech", "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events and {e["customer"] for e in events} == {"Initech"}


def wait_until_following(log: PullLog, lines: queue.Queue) -> None:
    """Probe events until one comes out: from then on the follower is at the end of the log."""
    for probe in range(100):
        log.write(PullEvent(ts="2026-12-04T10:00:00.500Z", request_id=f"probe-{probe}", action="token", method="GET", status=200))
        try:
            while not json.loads(lines.get(timeout=0.3))["request_id"].startswith("probe"):
                pass
            return
        except queue.Empty:
            continue
    raise AssertionError("authmirror logs --follow printed nothing")


def test_follow_across_rotations(tmp_path):
    path = tmp_path / "pulls.jsonl"
    log = PullLog(path, LogRotation(max_size=4096, keep=100))
    log.open()
    log.write(PullEvent(ts="2026-12-04T10:00:00.000Z", request_id="before", action="token", method="GET", status=200))
    authmirror = str(Path(sys.executable).parent / "authmirror")
    follower = subprocess.Popen([authmirror, "logs", "--log", str(path), "-n", "0", "--follow", "--json"], stdout=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in follower.stdout], daemon=True).start()
    try:
        wait_until_following(log, lines)
        for batch in range(10):
            for i in range(30):
                log.write(PullEvent(ts="2026-12-04T10:00:01.000Z", request_id=f"r{batch:02d}-{i:02d}", customer="Globex", action="blob", method="GET", status=200, bytes=1000))
            time.sleep(0.15)
        log.close()
        seen: list[str] = []
        deadline = time.time() + 20
        while len(seen) < 300 and time.time() < deadline:
            try:
                request_id = json.loads(lines.get(timeout=1))["request_id"]
                if not request_id.startswith("probe"):
                    seen.append(request_id)
            except queue.Empty:
                pass
    finally:
        follower.terminate()
        follower.wait(10)
    rotated = [p for p in os.listdir(tmp_path) if p.startswith("pulls.jsonl.")]
    assert len(rotated) >= 10  # the log rotated many times while it was followed
    assert seen == [f"r{b:02d}-{i:02d}" for b in range(10) for i in range(30)]  # every event once, in order
