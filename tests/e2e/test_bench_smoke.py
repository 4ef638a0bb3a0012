"""scripts/bench.py --quick: the benchmark runs end to end on tiny sizes, reports every test and
goal (the blob cache's sections included), writes its markdown and chart, and leaves none of the
processes it started behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
TESTS = {"pull", "blob", "huge", "heads", "parallel", "tokens", "cache-pull", "cache-blob", "cache-burst"}


def test_quick_benchmark_runs_reports_and_cleans_up(tmp_path):
    out, raw = tmp_path / "bench.md", tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--quick", "--out", str(out), "--json", str(raw)],
        capture_output=True, text=True, timeout=400, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(raw.read_text())
    assert not data["failures"]
    measured = {(r["test"], r["variant"]) for r in data["results"]}
    assert {test for test, _ in measured} == TESTS
    assert {"direct", "mitmproxy", "authmirror", "authmirror pass S3", "nginx + 2 replicas"} <= {v for _, v in measured}
    caches = {"authmirror cache cold", "authmirror cache warm proxy", "authmirror cache warm redirect", "Distribution cache cold", "Distribution cache warm"}
    assert caches <= {v for t, v in measured if t == "cache-pull"}
    # concurrent cold pulls through the cache: each layer fetched from the upstream once
    burst = next(r for r in data["results"] if (r["test"], r["variant"]) == ("cache-burst", "authmirror cache cold"))
    assert burst["metrics"]["upstream_gets"] == [3]
    assert all(goal["met"] is not None for goal in data["goals"]), data["goals"]
    assert "ratio vs" in run.stdout and "verdict" in run.stdout

    text = out.read_text()
    assert "### Goals" in text and "| CPU |" in text and "![benchmark chart](benchmarks.svg)" in text
    assert "### Blob cache" in text and "| cache: cold pull <= Distribution cold |" in text
    assert "<svg" in (tmp_path / "benchmarks.svg").read_text()[:2000]

    # Everything it started was stopped: no process still names its work directory or runs in it.
    assert not Path(data["workdir"]).exists()
    for process in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (process / "cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(process / "cwd")
        except OSError:
            continue  # gone meanwhile, or not ours to look at
        assert data["workdir"] not in cmdline and not cwd.startswith(data["workdir"]), (process, cmdline)
