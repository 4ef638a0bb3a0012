"""Reports on generated pull logs: the units (pulls, egress, failures, versions) with exact counts."""

import csv
import gzip
import io
import json
import re

import pytest

from authmirror.cli.main import main
from authmirror.logreader import ReadStats, expand_logs, parse_time, read_events
from authmirror.reports import Aggregator, summarise, version_key
from tests.support.pullevents import Image, LogBuilder

GLOBEX, INITECH, HOOLI = "license-globex-0001", "license-initech-001", "license-hooli-00001"
APP = Image(aliases={"latest": "1.1"})
DB = Image(repository="vendor/db", layers=(5000,))
PULL_BYTES = {"app": 3100, "db": 5100}  # config blob 100 + layers


def scenario() -> LogBuilder:
    """Day 1: Globex and Initech pull; day 2: Hooli's expired license fails; someone guesses a license."""
    log = LogBuilder()
    log.skopeo_pull(GLOBEX, "Globex Corp", APP, "1.0")
    log.skopeo_pull(GLOBEX, "Globex Corp", APP, "1.0")
    log.skopeo_pull(GLOBEX, "Globex Corp", APP, "1.0", platforms=2)  # index + 2 platform manifests: one pull
    log.containerd_pull(INITECH, "Initech", APP, "1.1")  # challenge, HEAD tag, GET digest: one pull of 1.1
    log.containerd_pull(INITECH, "Initech", DB, "2.0")
    log.advance(120)
    log.pinned_pull(GLOBEX, "Globex Corp", APP, "1.0")  # by digest, long after any tag request: its own pull
    log.presence_check(INITECH, "Initech", APP, "1.1")  # HEAD only: not a pull
    log.skopeo_pull(INITECH, "Initech", APP, "latest")  # latest is 1.1 (same digest)
    log.advance(86400)
    log.refused_pull(HOOLI, "Hooli", APP, "1.0", "DENIED", "license for Hooli expired on 2024-01-31")
    log.advance(120)
    log.refused_pull(HOOLI, "Hooli", APP, "1.0", "DENIED", "license for Hooli expired on 2024-01-31")
    log.advance(10)
    log.refused_pull(HOOLI, "Hooli", APP, "1.0", "DENIED", "license for Hooli expired on 2024-01-31")  # same attempt (within 60 s)
    log.unknown_license_pull(APP, "1.0")
    return log


def rows_by_key(report) -> dict:
    return {row.key: row for row in report.rows}


def test_pulls_egress_failures_per_customer():
    report = summarise(scenario().events)
    rows = rows_by_key(report)
    globex, initech, hooli, unknown = rows["Globex Corp"], rows["Initech"], rows["Hooli"], rows["(unknown license)"]
    assert globex.values["pulls"] == 4
    assert globex.values["egress_bytes"] == 4 * PULL_BYTES["app"]
    assert globex.values["requests"] == 5 + 5 + 7 + 5
    assert initech.values["pulls"] == 3
    assert initech.values["egress_bytes"] == 2 * PULL_BYTES["app"] + PULL_BYTES["db"]
    assert (hooli.values["pulls"], hooli.values["failed_pulls"], hooli.values["failures"]) == (0, 2, 6)
    assert (unknown.values["failed_pulls"], unknown.values["failures"]) == (1, 1)
    assert globex.values["failures"] == initech.values["failures"] == 0
    assert report.challenges == 2 + 3  # containerd's first HEAD, once per containerd pull and refused pull
    assert report.totals.values["pulls"] == 7
    assert report.totals.values["egress_bytes"] == 6 * PULL_BYTES["app"] + PULL_BYTES["db"]
    assert len(globex.images) == 1 and len(initech.images) == 2
    assert sorted(initech.versions) == ["acme/vendor/vendor/app:1.1", "acme/vendor/vendor/db:2.0"]  # latest is 1.1
    assert globex.first_seen.startswith("2026-11-01T09:00:00") and hooli.first_seen.startswith("2026-11-02")


def test_failures_name_customer_reason_and_count_attempts():
    report = summarise(scenario().events)
    sentences = [f.sentence() for f in report.failures]
    assert sentences == [
        "Hooli failed 2 pulls: license for Hooli expired on 2024-01-31 (DENIED)",
        "(unknown license) failed 1 pull: unknown license: use your license ID as the registry password (UNAUTHORIZED)",
    ]
    assert report.failures[0].failures == 6
    assert report.daily_failed_pulls == {"2026-11-02": {"DENIED": 2, "UNAUTHORIZED": 1}}


def test_versions_and_customers_behind():
    report = summarise(scenario().events)
    versions = {(v.customer, v.image): v for v in report.versions}
    globex = versions[("Globex Corp", APP.name)]
    assert (globex.version, globex.latest, globex.behind, globex.pulls) == ("1.0", "1.1", True, 4)
    initech = versions[("Initech", APP.name)]
    assert (initech.version, initech.behind) == ("1.1", False)  # pulled `latest`, which is 1.1
    assert versions[("Initech", DB.name)].version == "2.0"
    assert [(v.customer, v.image) for v in report.old_versions] == [("Globex Corp", APP.name)]


@pytest.mark.parametrize(
    "by, expected",
    [
        ("image", {APP.name: 6, DB.name: 1}),
        ("day", {"2026-11-01": 7, "2026-11-02": 0}),
        ("tag", {f"{APP.name}:1.0": 4, f"{APP.name}:1.1": 2, f"{DB.name}:2.0": 1, f"{APP.name}:?": 0, f"{DB.name}:?": 0}),
    ],
)
def test_groupings(by, expected):
    report = summarise(scenario().events, by=by)
    assert {row.key: row.values["pulls"] for row in report.rows} == expected


def test_license_grouping_shows_fingerprints_not_secrets():
    report = summarise(scenario().events, by="license")
    keys = {row.key for row in report.rows}
    assert all(k.startswith("lic_") or k == "(none)" for k in keys)
    assert GLOBEX not in json.dumps(report.as_dict())
    assert {row.label for row in report.rows if row.key != "(none)"} == {"Globex Corp", "Initech", "Hooli"}


def test_blob_bytes_of_tag_grouping_follow_the_pull():
    report = summarise(scenario().events, by="tag")
    rows = rows_by_key(report)
    assert rows[f"{APP.name}:1.0"].values["egress_bytes"] == 4 * PULL_BYTES["app"]
    assert rows[f"{DB.name}:2.0"].values["egress_bytes"] == PULL_BYTES["db"]


def test_registry_test_checks_are_not_usage():
    log = scenario()
    checks = LogBuilder(now=log.now)
    checks.skopeo_pull(GLOBEX, "Globex Corp", APP, "1.1")
    for event in checks.events:
        event["user_agent"] = "authmirror-registry-test/0.1.0"
    report = summarise(log.events + checks.events)
    assert report.checks == len(checks.events) == 5
    assert rows_by_key(report)["Globex Corp"].values["pulls"] == 4


def test_version_order():
    assert sorted(["1.10", "1.9", "1.9-rc1", "v2.0", "1.0.1"], key=version_key) == ["1.0.1", "1.9-rc1", "1.9", "1.10", "v2.0"]


# -- reading logs -------------------------------------------------------------------------------


def split_rotated(log: LogBuilder, path, parts: int = 3):
    """Write the events as a rotated log: PATH.2.gz (oldest), PATH.1, PATH."""
    events = log.events
    size = len(events) // parts + 1
    chunks = [events[i:i + size] for i in range(0, len(events), size)]
    names = [path.with_name(path.name + ".2.gz"), path.with_name(path.name + ".1"), path]
    for name, chunk in zip(names, chunks):
        text = "".join(json.dumps(e) + "\n" for e in chunk)
        if name.suffix == ".gz":
            with gzip.open(name, "wt") as f:
                f.write(text)
        else:
            name.write_text(text)


def report_json(*args) -> dict:
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        assert main(["report", *args]) == 0
    return json.loads(out.getvalue())


def test_rotated_files_torn_line_and_unknown_fields(tmp_path):
    log = scenario()
    path = tmp_path / "pulls.jsonl"
    split_rotated(log, path)
    with open(path, "a") as f:
        f.write('{"ts":"2026-11-02T10:00:00.000Z","request_id":"torn","lic')  # the mirror is mid-write
    data = report_json("--log", str(path), "--json")
    assert data["files"] == 3 and data["skipped_lines"] == 1
    assert data["totals"]["pulls"] == 7 and data["totals"]["failed_pulls"] == 3
    extra = tmp_path / "extra.jsonl"
    log.write(extra, extra_fields={"ratelimit_remaining": 97, "edge_region": "eu-west-1"})
    assert report_json("--log", str(extra), "--json")["totals"] == data["totals"]


def test_replicas_are_merged_by_time(tmp_path):
    """containerd's HEAD lands on one replica and its GET on another: still one pull."""
    log = scenario()
    (tmp_path / "logs").mkdir()
    a, b = tmp_path / "logs" / "a.jsonl", tmp_path / "logs" / "b.jsonl"
    with open(a, "w") as fa, open(b, "w") as fb:
        for index, event in enumerate(log.events):
            (fa if index % 2 else fb).write(json.dumps(event) + "\n")
    data = report_json("--log", str(tmp_path / "logs"), "--json")
    assert data["totals"]["pulls"] == 7 and data["files"] == 2
    assert {r["key"]: r["pulls"] for r in data["rows"]} == {"Globex Corp": 4, "Initech": 3, "Hooli": 0, "(unknown license)": 0}


def test_since_until_window(tmp_path):
    path = scenario().write(tmp_path / "pulls.jsonl")
    day2 = report_json("--log", str(path), "--since", "2026-11-02", "--json")
    assert day2["totals"]["pulls"] == 0 and day2["totals"]["failed_pulls"] == 3
    day1 = report_json("--log", str(path), "--until", "2026-11-01", "--json")  # a date includes its whole day
    assert day1["totals"]["pulls"] == 7 and day1["totals"]["failed_pulls"] == 0
    assert parse_time("2026-11-01T10:00") == "2026-11-01T10:00:00.000Z"
    assert parse_time("24h", now=86400 * 2) == "1970-01-02T00:00:00.000Z"


def test_table_and_csv_output(tmp_path, capsys):
    path = scenario().write(tmp_path / "pulls.jsonl")
    assert main(["report", "--log", str(path)]) == 0
    table = capsys.readouterr().out
    assert "7 pulls, 23.1 KiB egress, 3 failed pulls (7 failed requests), 3 customers, 2 images" in table
    assert "Hooli failed 2 pulls: license for Hooli expired on 2024-01-31 (DENIED)" in table
    assert "Customers on old versions" in table and "Globex Corp" in table.split("Customers on old versions")[1]
    assert main(["report", "--log", str(path), "--format", "csv", "--by", "image"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["image"], r["pulls"], r["egress_bytes"]) for r in rows] == [(APP.name, "6", str(6 * 3100)), (DB.name, "1", "5100")]


def test_report_needs_a_log(tmp_path, capsys):
    assert main(["report", "--log", str(tmp_path / "missing.jsonl")]) == 1
    assert "no pull log" in capsys.readouterr().err


def test_memory_does_not_grow_with_events():
    """The aggregator keeps one cell per (customer, license, image, version, day), not per event."""
    aggregator = Aggregator()
    log = LogBuilder()
    for _ in range(200):
        log.skopeo_pull(GLOBEX, "Globex Corp", APP, "1.0")
    aggregator.add_all(log.events)
    cells = len(aggregator._cells)
    aggregator.add_all(log.events * 5)
    assert len(aggregator._cells) == cells and aggregator.report().totals.values["pulls"] == 1200


def test_stream_reader_yields_in_file_order(tmp_path):
    path = scenario().write(tmp_path / "pulls.jsonl")
    stats = ReadStats()
    events = list(read_events(expand_logs([path]), stats))
    assert len(events) == stats.lines == len(scenario().events)


# -- the blob cache: upstream egress saved --------------------------------------------------------


def cache_scenario() -> LogBuilder:
    """A mirror with its cache on: cold and warm pulls, redirect-mode hits, a stale manifest."""
    log = LogBuilder()
    log.skopeo_pull(GLOBEX, "Globex Corp", APP, "1.0", cache="fill")  # cold: fetched upstream, stored
    log.skopeo_pull(GLOBEX, "Globex Corp", APP, "1.0", cache="hit")  # warm, serve: proxy
    log.skopeo_pull(INITECH, "Initech", APP, "1.0", cache="hit", serve="redirect")  # blob hits are 307s
    log.skopeo_pull(INITECH, "Initech", DB, "2.0", cache="miss")  # not stored (too big for the cache)
    log.advance(120)
    log.skopeo_pull(INITECH, "Initech", DB, "2.0", cache="stale")  # upstream down: stale manifest, cached blobs
    # A hit whose file turned out corrupt while being sent: the client's transfer broke, nothing saved.
    digest, size = DB.blobs("2.0")[1]
    log.event(license=INITECH, customer="Initech", image=DB, action="blob", method="GET", status=200, reference=digest, digest=digest, bytes=size // 2, cache="hit", error_code="UNAVAILABLE")
    return log


MANIFEST_BYTES = 500  # what LogBuilder's manifest GETs carry


def test_upstream_egress_saved_per_customer_and_image():
    report = summarise(cache_scenario().events)
    rows = rows_by_key(report)
    globex, initech = rows["Globex Corp"], rows["Initech"]
    assert (globex.values["pulls"], initech.values["pulls"]) == (2, 3)
    assert globex.values["saved_bytes"] == PULL_BYTES["app"] + MANIFEST_BYTES
    # the redirect-mode hits count as egress (the cache's file server sent them) and as saved
    assert initech.values["egress_bytes"] == PULL_BYTES["app"] + 2 * PULL_BYTES["db"]
    assert initech.values["saved_bytes"] == (PULL_BYTES["app"] + MANIFEST_BYTES) + (PULL_BYTES["db"] + MANIFEST_BYTES)
    assert initech.values["failures"] == 1
    assert report.cache_events == 3 * (1 + 3) + 2 * (1 + 2) + 1  # manifest and blobs of each pull, and the broken hit
    images = rows_by_key(summarise(cache_scenario().events, by="image"))
    assert images[APP.name].values["saved_bytes"] == 2 * (PULL_BYTES["app"] + MANIFEST_BYTES)
    assert images[DB.name].values["saved_bytes"] == PULL_BYTES["db"] + MANIFEST_BYTES
    assert report.totals.values["egress_bytes"] == 3 * PULL_BYTES["app"] + 2 * PULL_BYTES["db"]
    assert report.daily_egress == {"2026-11-01": {"Globex Corp": 2 * PULL_BYTES["app"], "Initech": PULL_BYTES["app"] + 2 * PULL_BYTES["db"]}}


def test_saved_egress_in_table_csv_and_json(tmp_path, capsys):
    path = cache_scenario().write(tmp_path / "pulls.jsonl")
    saved = 2 * (PULL_BYTES["app"] + MANIFEST_BYTES) + PULL_BYTES["db"] + MANIFEST_BYTES  # 12,800 B
    assert main(["report", "--log", str(path)]) == 0
    table = capsys.readouterr().out
    assert "5 pulls, 19.0 KiB egress, 1 failed pull (1 failed request), 2 customers, 2 images; the cache saved 12.5 KiB of upstream egress" in table
    header, _, *lines = table.split("By customer\n", 1)[1].splitlines()
    assert re.split(r"\s{2,}", header)[:4] == ["customer", "pulls", "egress", "upstream egress saved"]
    initech = next(line for line in lines if line.startswith("Initech"))
    assert initech.split()[1:6] == ["3", "13.0", "KiB", "9.0", "KiB"]
    assert main(["report", "--log", str(path), "--format", "csv", "--by", "image"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["image"]: int(r["saved_bytes"]) for r in rows} == {APP.name: 2 * 3600, DB.name: 5600}
    data = report_json("--log", str(path), "--json")
    assert data["totals"]["saved_bytes"] == saved and data["cache_events"] == 19
    assert {r["key"]: r["saved_bytes"] for r in data["rows"]} == {"Globex Corp": 3600, "Initech": 9200}


def test_no_saved_column_without_a_cache(tmp_path, capsys):
    path = scenario().write(tmp_path / "pulls.jsonl")
    assert main(["report", "--log", str(path)]) == 0
    table = capsys.readouterr().out
    assert "saved" not in table
    assert report_json("--log", str(path), "--json")["totals"]["saved_bytes"] == 0  # tools get a stable schema
