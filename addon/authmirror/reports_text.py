"""Usage reports as text: an aligned table for people, CSV and JSON for tools."""

from __future__ import annotations

import csv
import io
import json

from .reports import MEASURES, Measure, Report, Row, image_of, is_challenge

GROUP_TITLES = {"customer": "customer", "license": "license", "image": "image", "tag": "image:version", "day": "day"}


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def short_time(ts: str | None) -> str:
    """2026-12-04T17:08:12.961Z -> 2026-12-04 17:08 (UTC)."""
    return ts[:16].replace("T", " ") if ts else "-"


def measure_text(value: int, unit: str) -> str:
    return human_bytes(value) if unit == "bytes" else f"{value:,}"


def table_columns(by: str, measures: tuple[Measure, ...] = MEASURES) -> list[str]:
    head = [GROUP_TITLES[by]] + (["customer"] if by == "license" else [])
    return head + [m.title for m in measures] + ["images", "versions", "first seen", "last seen"]


def table_cells(row: Row, by: str, measures: tuple[Measure, ...] = MEASURES) -> list[str]:
    head = [row.key] + ([row.label] if by == "license" else [])
    values = [measure_text(row.values[m.name], m.unit) for m in measures]
    return head + values + [str(len(row.images)), str(len(row.versions)), short_time(row.first_seen), short_time(row.last_seen)]


def align(header: list[str], rows: list[list[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """Columns padded to their widest cell; the `right` ones (numbers) right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def numeric_columns(by: str, measures: tuple[Measure, ...] = MEASURES) -> frozenset[int]:
    first = 2 if by == "license" else 1
    return frozenset(range(first, first + len(measures) + 2))


def count(number: int, noun: str) -> str:
    """'1 pull', '14 pulls', '1 failed request'."""
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def render_table(report: Report) -> str:
    totals = report.totals.values
    measures = report.shown_measures
    read = [count(report.events, "event") + " from " + count(report.files, "file")]
    if report.skipped_lines:
        read.append(count(report.skipped_lines, "unreadable line") + " skipped")
    if report.checks:
        read.append(count(report.checks, "registry-test request") + " not counted")
    out = [
        f"Pull report, {short_time(report.totals.first_seen)} .. {short_time(report.totals.last_seen)} UTC ({'; '.join(read)})",
        f"{count(totals['pulls'], 'pull')}, {human_bytes(totals['egress_bytes'])} egress, {count(totals['failed_pulls'], 'failed pull')}"
        f" ({count(totals['failures'], 'failed request')}), {count(report.customers, 'customer')}, {count(len(report.totals.images), 'image')}"
        + (f"; the cache saved {human_bytes(totals['saved_bytes'])} of upstream egress" if report.cache_events else ""),
        "",
        f"By {GROUP_TITLES[report.by]}",
        *align(table_columns(report.by, measures), [table_cells(row, report.by, measures) for row in report.rows], numeric_columns(report.by, measures)),
    ]
    if report.failures:
        out += ["", "Failures"]
        out += [f"  {f.sentence()} [{count(f.failures, 'request')}, last {short_time(f.last_seen)}]" for f in report.failures]
    if report.old_versions:
        out += ["", "Customers on old versions"]
        lines = align(
            ["customer", "image", "running", "latest", "last pull"],
            [[v.customer, v.image, v.version, v.latest or "-", short_time(v.last_pull)] for v in report.old_versions],
        )
        out += ["  " + line for line in lines]
    return "\n".join(out) + "\n"


def render_csv(report: Report) -> str:
    """The grouped table with raw numbers (bytes as integers, times as in the events)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    head = [report.by] + (["customer"] if report.by == "license" else [])
    writer.writerow(head + [m.name for m in MEASURES] + ["images", "versions", "customers", "first_seen", "last_seen"])
    for row in report.rows:
        cells = [row.key] + ([row.label] if report.by == "license" else [])
        writer.writerow(cells + [row.values[m.name] for m in MEASURES] + [len(row.images), len(row.versions), len(row.customers), row.first_seen, row.last_seen])
    return buffer.getvalue()


def render_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n"


def event_line(event: dict) -> str:
    """One pull event, readably: when, who, what, and how it ended."""
    when = str(event.get("ts") or "")[:19].replace("T", " ")
    who = event.get("customer") or ("(unknown license)" if event.get("error_code") and not is_challenge(event) else "-")
    what = event.get("action") or "?"
    image = image_of(event)
    if image:
        reference = str(event.get("reference") or "")
        if ":" in reference:  # a digest: the short form is enough to tell blobs apart
            what += f" {image}@{reference[:19]}"
        else:
            what += f" {image}" + (f":{reference}" if reference else "")
    status = event.get("status")
    if is_challenge(event):
        outcome = f"{status} challenge (no license yet)"
    elif event.get("error_code"):
        outcome = f"{status} {event['error_code']}" + (f": {event['error']}" if event.get("error") else "")
    else:
        outcome = f"{status} {human_bytes(event.get('bytes') or 0)}"
    duration = event.get("duration_ms")
    took = f" {duration:.0f} ms" if isinstance(duration, (int, float)) else ""
    return f"{when}  {who}  {event.get('method') or '?'} {what}  {outcome}{took}  [{event.get('request_id') or '-'}]"
