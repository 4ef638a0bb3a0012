"""Usage reports from pull events: pulls, egress and failures per customer, license, image, tag or day.

The units are what a vendor means, not what the wire shows:
- A *pull* is a successful manifest GET for repo:reference by a license. containerd resolves a tag
  with HEAD and then GETs the digest: that GET is the pull of the tag. The manifests fetched right
  after it (an image index's platform manifest: same license and image, within PULL_WINDOW of the
  tag request) belong to the same pull. HEADs, token requests and tag lists are not pulls.
- *Egress* is the blob bytes sent to clients (2xx blob answers, and the cache's redirect-mode hits:
  a 307 to the cache's file server, whose event carries the bytes that server sends).
- *Upstream egress saved* is the bytes of blobs and manifests answered from the mirror's cache
  (`cache: hit` or `stale`) instead of fetched from the vendor's registry.
- A *failure* is an error answer, except the 401 challenge without a license that starts every
  pull; an unknown license is a failure (of "(unknown license)").
- A *failed pull* is a run of failures by one license (without one: one client address) for one
  image, within FAILURE_WINDOW of the run's first failure; its reason is that first failure's.
- `authmirror registry test --via-proxy` checks (their own User-Agent) are counted apart, not as
  pulls: a vendor's health checks must not look like customer usage.
- A customer's *version* of an image is the tag they pulled last (a digest or a tag such as
  `latest` counts as the version tag that had the same digest); *old* means lower than the
  highest version tag anyone pulled.

Adding a column: append a Measure to MEASURES and give its increment in `Aggregator.increments`;
every grouping, the totals and every output format pick it up. Unknown event fields are ignored.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

PULL_WINDOW = 60.0  # seconds from a tag request to the digest GETs that complete the same pull
FAILURE_WINDOW = 60.0  # seconds of failures that count as one failed pull
GROUPINGS = ("customer", "license", "image", "tag", "day")
UNKNOWN_LICENSE = "(unknown license)"
NO_IMAGE = "(no image)"
# 401s without a license that are real failures (a wrong password), not the challenge every pull starts with.
FAILED_LOGIN_MESSAGES = ("unknown license", "the license this token was issued for is no longer known")
CHECK_USER_AGENTS = ("authmirror-registry-test/",)  # the vendor's own `registry test --via-proxy`
_VERSION_RE = re.compile(r"^[vV]?\d+(\.\d+)*([-+_.][0-9A-Za-z.+_-]*)?$")


@dataclass(frozen=True)
class Measure:
    name: str
    title: str
    unit: str  # "count" | "bytes"
    cache_only: bool = False  # tables for people show it only when the log has cache fields


MEASURES: tuple[Measure, ...] = (
    Measure("pulls", "pulls", "count"),
    Measure("egress_bytes", "egress", "bytes"),
    Measure("saved_bytes", "upstream egress saved", "bytes", cache_only=True),
    Measure("failed_pulls", "failed pulls", "count"),
    Measure("failures", "failed requests", "count"),
    Measure("requests", "requests", "count"),
)
MEASURE_NAMES = tuple(m.name for m in MEASURES)
SAVED = ("hit", "stale")  # cache results whose bytes did not come from the upstream


class Cell:
    """Totals for one (customer, license, image, version, day): what every event is folded into.

    Cells are few (customers × images × versions × days), so each event costs one dict lookup;
    the groupings are rolled up from the cells when the report is made.
    """

    __slots__ = ("values", "first_seen", "last_seen")

    def __init__(self, ts: str):
        self.values: dict[str, int] = dict.fromkeys(MEASURE_NAMES, 0)
        self.first_seen = ts
        self.last_seen = ts

    def add(self, ts: str, increments: dict[str, int]) -> None:
        values = self.values
        for name, value in increments.items():
            values[name] += value
        if ts < self.first_seen:
            self.first_seen = ts
        elif ts > self.last_seen:
            self.last_seen = ts


class Row:
    """Totals for one key of a grouping (one customer, one image, one day...)."""

    __slots__ = ("key", "label", "values", "images", "versions", "customers", "first_seen", "last_seen")

    def __init__(self, key: str, label: str = ""):
        self.key = key
        self.label = label
        self.values: dict[str, int] = dict.fromkeys(MEASURE_NAMES, 0)
        self.images: set[str] = set()
        self.versions: set[str] = set()
        self.customers: set[str] = set()
        self.first_seen = ""
        self.last_seen = ""

    def merge(self, cell: Cell, customer: str | None, image: str | None, version: str | None) -> None:
        values = self.values
        for name, value in cell.values.items():
            values[name] += value
        if customer:
            self.customers.add(customer)
        if cell.values["pulls"] and image:
            self.images.add(image)
            if version:
                self.versions.add(f"{image}:{version}")
        if not self.first_seen or cell.first_seen < self.first_seen:
            self.first_seen = cell.first_seen
        if cell.last_seen > self.last_seen:
            self.last_seen = cell.last_seen

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            **({"label": self.label} if self.label else {}),
            **self.values,
            "images": len(self.images),
            "versions": len(self.versions),
            "customers": len(self.customers),
            "first_seen": self.first_seen or None,
            "last_seen": self.last_seen or None,
        }


@dataclass
class FailureRow:
    customer: str
    error_code: str
    reason: str
    failed_pulls: int = 0
    failures: int = 0
    first_seen: str = ""
    last_seen: str = ""

    def sentence(self) -> str:
        pulls = f"{self.failed_pulls} pull{'s' if self.failed_pulls != 1 else ''}"
        return f"{self.customer} failed {pulls}: {self.reason} ({self.error_code})"

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "sentence": self.sentence()}


@dataclass
class VersionRow:
    customer: str
    image: str
    version: str
    latest: str | None
    behind: bool
    pulls: int
    last_pull: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    by: str
    rows: list[Row]
    groupings: dict[str, list[Row]]
    totals: Row
    failures: list[FailureRow]
    versions: list[VersionRow]
    daily_egress: dict[str, dict[str, int]]  # day -> customer -> bytes
    daily_failed_pulls: dict[str, dict[str, int]]  # day -> error code -> failed pulls
    events: int
    challenges: int
    checks: int = 0
    cache_events: int = 0  # blob and manifest events with a `cache` field: the mirror's cache was on
    since: str | None = None
    until: str | None = None
    files: int = 0
    skipped_lines: int = 0

    @property
    def customers(self) -> int:
        """Customers seen (an unknown license is nobody's)."""
        return sum(1 for row in self.groupings["customer"] if row.key != UNKNOWN_LICENSE)

    @property
    def old_versions(self) -> list[VersionRow]:
        return [v for v in self.versions if v.behind]

    @property
    def shown_measures(self) -> tuple[Measure, ...]:
        """The measures worth a column for people: cache savings only when the cache was on."""
        return tuple(m for m in MEASURES if self.cache_events or not m.cache_only)

    def as_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "period": {"since": self.since, "until": self.until, "first_event": self.totals.first_seen or None, "last_event": self.totals.last_seen or None},
            "events": self.events,
            "challenges": self.challenges,
            "checks": self.checks,
            "cache_events": self.cache_events,
            "files": self.files,
            "skipped_lines": self.skipped_lines,
            "measures": [m.__dict__ for m in MEASURES],
            "totals": self.totals.as_dict(),
            "rows": [row.as_dict() for row in self.rows],
            "failures": [f.as_dict() for f in self.failures],
            "versions": [v.as_dict() for v in self.versions],
            "old_versions": [v.as_dict() for v in self.old_versions],
            "daily_egress": self.daily_egress,
            "daily_failed_pulls": self.daily_failed_pulls,
        }


# -- helpers ----------------------------------------------------------------------------------


def is_digest(reference: str) -> bool:
    return ":" in reference  # tags cannot contain ':'; digests are algorithm:hex


def is_version(tag: str) -> bool:
    return bool(_VERSION_RE.match(tag))


def version_key(tag: str) -> tuple:
    """1.10 > 1.9 > 1.9-rc1: numbers compare as numbers, a pre-release sorts before its release."""
    text = tag[1:] if tag[:1] in "vV" else tag
    match = re.match(r"^(\d+(?:\.\d+)*)(.*)$", text)
    if not match:
        return ((), 0, text)
    numbers = tuple(int(n) for n in match.group(1).split("."))
    rest = match.group(2).lstrip("-+_.")
    return (numbers, 0 if rest else 1, rest)


def is_challenge(event: dict) -> bool:
    """The 401 that starts every pull (no license yet): not a failure, not a customer's request."""
    if event.get("error_code") != "UNAUTHORIZED" or event.get("license"):
        return False
    message = event.get("error") or ""
    return not message.startswith(FAILED_LOGIN_MESSAGES)


def is_failure(event: dict) -> bool:
    failed = bool(event.get("error_code")) or (event.get("status") or 0) >= 400
    return failed and not is_challenge(event)


def image_of(event: dict) -> str | None:
    repository = event.get("repository")
    if not repository:
        return None
    return f"{event.get('app') or '-'}/{event.get('registry') or '-'}/{repository}"


def seconds(ts: str) -> float:
    try:
        return dt.datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return 0.0


# -- aggregation ------------------------------------------------------------------------------


@dataclass
class _PullState:
    """The last tag request of one license for one image: which digest GETs complete it."""

    tag: str
    at: float
    counted: bool


@dataclass
class _CustomerImage:
    version: str = ""
    digest: str | None = None
    pulls: int = 0
    last_pull: str = ""


@dataclass
class _FailureRun:
    started: float
    row: FailureRow


@dataclass
class Aggregator:
    """Folds events, one at a time, into the report; memory grows with customers × images, not events."""

    by: str = "customer"
    events: int = 0
    challenges: int = 0
    checks: int = 0
    cache_events: int = 0
    _cells: dict[tuple, Cell] = field(default_factory=dict)
    _pulls: dict[tuple[str, str], _PullState] = field(default_factory=dict)
    _blob_version: dict[tuple[str, str], str] = field(default_factory=dict)
    _customer_images: dict[tuple[str, str], _CustomerImage] = field(default_factory=dict)
    _version_of_digest: dict[str, str] = field(default_factory=dict)  # manifest digest -> version tag
    _versions_of_image: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _failure_runs: dict[tuple[str, str], _FailureRun] = field(default_factory=dict)
    _failures: dict[tuple[str, str, str], FailureRow] = field(default_factory=dict)
    _daily_egress: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    _daily_failed: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))

    def __post_init__(self) -> None:
        if self.by not in GROUPINGS:
            raise ValueError(f"cannot group by {self.by!r} (one of {', '.join(GROUPINGS)})")

    def add_all(self, events: Iterable[dict]) -> "Aggregator":
        for event in events:
            self.add(event)
        return self

    def add(self, event: dict) -> None:
        # The hot path of a million-event report: each field is read once, helpers inlined.
        self.events += 1
        get = event.get
        license = get("license")
        error_code = get("error_code")
        if error_code == "UNAUTHORIZED" and not license and not str(get("error") or "").startswith(FAILED_LOGIN_MESSAGES):
            self.challenges += 1
            return
        user_agent = get("user_agent")
        if user_agent and user_agent.startswith(CHECK_USER_AGENTS):
            self.checks += 1
            return
        ts = get("ts") or ""
        customer = get("customer") or (None if license else UNKNOWN_LICENSE)
        repository = get("repository")
        image = f"{get('app') or '-'}/{get('registry') or '-'}/{repository}" if repository else None
        failed = bool(error_code) or (get("status") or 0) >= 400
        increments, version = self.increments(event, ts, license or f"ip:{get('client_ip')}", customer, image, failed)
        key = (customer, license, image, version, ts[:10])
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = Cell(ts)
        cell.add(ts, increments)

    def _roll_up(self) -> tuple[Row, dict[str, dict[str, Row]]]:
        totals = Row("total")
        groupings: dict[str, dict[str, Row]] = {name: {} for name in GROUPINGS}
        for (customer, license, image, version, day), cell in self._cells.items():
            keys = {
                "customer": customer or UNKNOWN_LICENSE,
                "license": license or "(none)",
                "image": image or NO_IMAGE,
                "tag": f"{image}:{version or '?'}" if image else NO_IMAGE,
                "day": day or "(no time)",
            }
            totals.merge(cell, customer, image, version)
            for name, rows in groupings.items():
                row = rows.get(keys[name])
                if row is None:
                    row = rows[keys[name]] = Row(keys[name], label=(customer or "") if name == "license" else "")
                row.merge(cell, customer, image, version)
        return totals, groupings

    def increments(self, event: dict, ts: str, who: str, customer: str | None, image: str | None, failed: bool) -> tuple[dict[str, int], str | None]:
        """What one event adds to each measure, and the image version it concerns (if known)."""
        increments = {"requests": 1}
        action = event.get("action")
        status = event.get("status") or 0
        cache = event.get("cache")
        if cache and action in ("blob", "manifest"):
            self.cache_events += 1
        if failed:
            increments["failures"] = 1
            if self._failed(event, ts, who, customer or UNKNOWN_LICENSE, image):
                increments["failed_pulls"] = 1
            return increments, None
        if action == "blob":
            # A redirect-mode cache hit is a 307 to the cache's file server; its event has the bytes sent.
            if status < 300 or (status == 307 and cache == "hit"):
                size = event.get("bytes") or 0
                increments["egress_bytes"] = size
                if cache in SAVED:
                    increments["saved_bytes"] = size
                if size and customer:
                    self._daily_egress[ts[:10]][customer] += size
            return increments, self._blob_version.get((who, image or ""))
        if action == "manifest" and image and status < 300:
            if cache in SAVED:
                increments["saved_bytes"] = event.get("bytes") or 0
            counted, version = self._manifest(event, ts, who, image)
            if version:
                self._blob_version[(who, image)] = version
            if counted:
                increments["pulls"] = 1
                self._record_pull(customer or UNKNOWN_LICENSE, image, version or "", event.get("digest"), ts)
            return increments, version
        return increments, None

    def _manifest(self, event: dict, ts: str, who: str, image: str) -> tuple[bool, str | None]:
        reference = str(event.get("reference") or "")
        method = event.get("method")
        key = (who, image)
        digest = event.get("digest")
        if not is_digest(reference):
            if digest and is_version(reference):
                self._version_of_digest[digest] = reference
                self._versions_of_image[image].add(reference)
            version = self._version(reference, digest)
            self._pulls[key] = _PullState(version, seconds(ts), counted=method == "GET")
            return method == "GET", version
        if method != "GET":
            return False, None
        state = self._pulls.get(key)
        if state is not None and seconds(ts) - state.at <= PULL_WINDOW:
            if state.counted:
                return False, state.tag  # a platform manifest of the pull just counted
            state.counted = True
            return True, state.tag  # containerd: HEAD by tag, then GET by digest
        return True, self._version(reference, digest)  # pinned by digest

    def _version(self, reference: str, digest: str | None) -> str:
        """A version tag as it is; `latest` or a digest as the version tag seen with the same manifest."""
        if is_version(reference):
            return reference
        return self._version_of_digest.get(digest or "") or self._version_of_digest.get(reference) or reference

    def _record_pull(self, customer: str, image: str, version: str, digest: str | None, ts: str) -> None:
        entry = self._customer_images.get((customer, image))
        if entry is None:
            entry = self._customer_images[(customer, image)] = _CustomerImage()
        entry.pulls += 1
        if ts >= entry.last_pull:
            entry.version, entry.digest, entry.last_pull = version, digest, ts

    def _failed(self, event: dict, ts: str, who: str, customer: str, image: str | None) -> bool:
        """Count the failure; True when it starts a new failed pull."""
        code = str(event.get("error_code") or f"HTTP {event.get('status')}")
        run_key = (who, image or "")
        now = seconds(ts)
        run = self._failure_runs.get(run_key)
        new_pull = run is None or now - run.started > FAILURE_WINDOW
        if new_pull:
            reason = str(event.get("error") or code.lower().replace("_", " "))
            row = self._failures.get((customer, code, reason))
            if row is None:
                row = self._failures[(customer, code, reason)] = FailureRow(customer, code, reason, first_seen=ts)
            row.failed_pulls += 1
            run = self._failure_runs[run_key] = _FailureRun(now, row)
            self._daily_failed[ts[:10]][code] += 1
        row = run.row
        row.failures += 1
        row.first_seen = min(row.first_seen or ts, ts)
        row.last_seen = max(row.last_seen, ts)
        return new_pull

    def report(self, since: str | None = None, until: str | None = None, files: int = 0, skipped_lines: int = 0) -> Report:
        totals, rolled_up = self._roll_up()
        groupings = {name: sorted_rows(rows.values(), name) for name, rows in rolled_up.items()}
        failures = sorted(self._failures.values(), key=lambda f: (-f.failed_pulls, -f.failures, f.customer, f.reason))
        return Report(
            by=self.by,
            rows=groupings[self.by],
            groupings=groupings,
            totals=totals,
            failures=failures,
            versions=self._version_rows(),
            daily_egress={day: dict(sorted(v.items())) for day, v in sorted(self._daily_egress.items())},
            daily_failed_pulls={day: dict(sorted(v.items())) for day, v in sorted(self._daily_failed.items())},
            events=self.events,
            challenges=self.challenges,
            checks=self.checks,
            cache_events=self.cache_events,
            since=since,
            until=until,
            files=files,
            skipped_lines=skipped_lines,
        )

    def _version_rows(self) -> list[VersionRow]:
        rows = []
        for (customer, image), entry in self._customer_images.items():
            version = self._version(entry.version, entry.digest)  # a version tag seen after the pull names it too
            known = self._versions_of_image.get(image)
            latest = max(known, key=version_key) if known else None
            behind = bool(latest and is_version(version) and version_key(version) < version_key(latest))
            rows.append(VersionRow(customer, image, version, latest, behind, entry.pulls, entry.last_pull))
        return sorted(rows, key=lambda r: (r.customer.lower(), r.image))


def sorted_rows(rows: Iterable[Row], grouping: str) -> list[Row]:
    if grouping == "day":
        return sorted(rows, key=lambda r: r.key)
    return sorted(rows, key=lambda r: (-r.values["pulls"], -r.values["egress_bytes"], r.key.lower()))


def summarise(events: Iterable[dict], by: str = "customer", **report_args: Any) -> Report:
    return Aggregator(by=by).add_all(events).report(**report_args)
