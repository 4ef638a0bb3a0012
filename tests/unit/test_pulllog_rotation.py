"""Pull-log rotation by size: config keys, whole lines in exactly one file, nothing lost."""

import json
import threading

import pytest
import yaml

from authmirror.config import LogRotation, load_config
from authmirror.errors import ConfigError
from authmirror.logreader import log_files
from authmirror.pulllog import PullEvent, PullLog


def config_with(tmp_path, pull_log):
    (tmp_path / "licenses.yaml").write_text("licenses: []\n")
    path = tmp_path / "authmirror.yaml"
    path.write_text(yaml.safe_dump({"pull_log": pull_log}))
    return load_config(path)


def test_mapping_form_with_rotation(tmp_path):
    config = config_with(tmp_path, {"path": "logs/pulls.jsonl", "max_size": "100MiB", "keep": 7})
    assert config.pull_log == tmp_path / "logs" / "pulls.jsonl"
    assert config.pull_log_rotation == LogRotation(100 * 1024 * 1024, 7)
    default_keep = config_with(tmp_path, {"path": "p.jsonl", "max_size": "1MiB"})
    assert default_keep.pull_log_rotation == LogRotation(1024 * 1024, 5)
    plain = config_with(tmp_path, "pulls.jsonl")
    assert plain.pull_log == tmp_path / "pulls.jsonl" and plain.pull_log_rotation is None


@pytest.mark.parametrize(
    "value, key",
    [
        ({"path": "p.jsonl"}, "pull_log.max_size"),
        ({"path": "p.jsonl", "max_size": "lots"}, "pull_log.max_size"),
        ({"path": "p.jsonl", "max_size": 10}, "pull_log.max_size"),
        ({"path": "p.jsonl", "max_size": "1MiB", "keep": 0}, "pull_log.keep"),
        ({"path": "-", "max_size": "1MiB"}, "pull_log.path"),
        ({"path": "p.jsonl", "max_size": "1MiB", "rotate": True}, "pull_log.rotate"),
        (["p.jsonl"], "pull_log"),
    ],
)
def test_bad_rotation_config_names_the_key(tmp_path, value, key):
    with pytest.raises(ConfigError) as e:
        config_with(tmp_path, value)
    assert e.value.key == key


def event(number: int) -> PullEvent:
    """Events of equal length (numbers below 10^6), so file sizes are predictable."""
    return PullEvent(ts="2026-12-04T10:00:00.000Z", request_id=f"req-{number:08d}", customer="Globex", action="blob", method="GET", status=200, bytes=10**6 + number)


def lines_of(path):
    return [json.loads(line) for f in log_files(path) for line in f.read_text().splitlines()]


def numbers_of(path):
    return [e["bytes"] - 10**6 for e in lines_of(path)]


def test_rotates_at_max_size_and_keeps_the_newest_files(tmp_path):
    path = tmp_path / "pulls.jsonl"
    line_size = len(event(0).to_json()) + 1
    per_file = 2048 // line_size
    log = PullLog(path, LogRotation(max_size=2048, keep=3))
    log.open()
    for number in range(200):
        log.write(event(number))
    log.close()
    files = log_files(path)
    assert [f.name for f in files] == ["pulls.jsonl.3", "pulls.jsonl.2", "pulls.jsonl.1", "pulls.jsonl"]
    assert all(f.stat().st_size <= 2048 for f in files)
    assert all(f.stat().st_size == per_file * line_size for f in files[:-1])  # rotated files are full
    numbers = numbers_of(path)
    assert numbers == list(range(200 - len(numbers), 200))  # the newest events, in order, none torn
    assert len(numbers) == 3 * per_file + (200 % per_file or per_file)
    assert log.failures == 0


def test_reopening_continues_the_current_file(tmp_path):
    path = tmp_path / "pulls.jsonl"
    for start in (0, 10):
        log = PullLog(path, LogRotation(max_size=2048, keep=3))
        log.open()
        for number in range(start, start + 10):
            log.write(event(number))
        log.close()
    assert numbers_of(path) == list(range(20))


def test_concurrent_writers_lose_and_tear_nothing_across_rotations(tmp_path):
    path = tmp_path / "pulls.jsonl"
    log = PullLog(path, LogRotation(max_size=16 * 1024, keep=1000))
    log.open()
    threads = [threading.Thread(target=lambda t=t: [log.write(event(t * 1000 + i)) for i in range(500)]) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    events = lines_of(path)
    assert len(events) == 4000
    assert len({e["request_id"] for e in events}) == 4000
    assert len(log_files(path)) > 10


def test_failed_rotation_keeps_writing(tmp_path, caplog):
    path = tmp_path / "pulls.jsonl"
    (tmp_path / "pulls.jsonl.1").mkdir()  # the rename onto it fails
    log = PullLog(path, LogRotation(max_size=2048, keep=1))
    log.open()
    for number in range(100):
        log.write(event(number))
    log.close()
    assert [json.loads(line)["bytes"] - 10**6 for line in path.read_text().splitlines()] == list(range(100))
    assert "pull log rotation failed" in caplog.text and log.failures == 0
