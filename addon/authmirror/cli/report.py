"""`authmirror report`: who pulled what, how much, and who is failing, from the pull log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import load_config
from ..errors import ConfigError
from ..logreader import ReadStats, expand_logs, parse_time, read_events
from ..reports import GROUPINGS, Aggregator
from .common import add_config_argument

FORMATS = ("table", "json", "csv", "html")


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser(
        "report",
        parents=[parent],
        help="usage per customer, license, image, tag or day from the pull log",
        description="Summarise pull events: pulls, egress, failures, versions in use. Reads rotated files "
        "(PATH.1, PATH.2, ...) too; several --log paths (one per replica) are merged.",
    )
    add_config_argument(parser)
    parser.add_argument("--log", action="append", type=Path, metavar="PATH", help="pull log file or directory of logs (repeatable; default: the config's pull_log)")
    parser.add_argument("--since", help="from this time: 2026-12-01, 2026-12-01T10:00, or 24h / 7d ago")
    parser.add_argument("--until", help="up to this time (a date includes that whole day)")
    parser.add_argument("--by", choices=GROUPINGS, default="customer", help="what one row is (default: customer)")
    parser.add_argument("--format", choices=FORMATS, help="table (default), json, csv, or html (one self-contained page with charts)")
    parser.add_argument("--json", action="store_true", help="same as --format json")
    parser.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout (.html implies --format html)")
    parser.set_defaults(func=run)


def default_logs(config_path: str) -> list[Path]:
    config = load_config(config_path, resolve_secrets=False)
    if config.pull_log is None or str(config.pull_log) == "-":
        raise ConfigError("pull_log", f"{config.path} writes no pull log file; pass --log PATH")
    return [config.pull_log]


def output_format(args: argparse.Namespace) -> str:
    if args.json:
        return "json"
    if args.format:
        return args.format
    return "html" if args.output and args.output.suffix.lower() in (".html", ".htm") else "table"


def run(args: argparse.Namespace) -> int:
    logs = expand_logs(args.log or default_logs(args.config))
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until, end=True) if args.until else None
    stats = ReadStats()
    aggregator = Aggregator(by=args.by).add_all(read_events(logs, stats, since, until))
    report = aggregator.report(since=since, until=until, files=stats.files, skipped_lines=stats.skipped)
    text = render(report, output_format(args))
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.output} ({report.events:,} events)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def render(report, fmt: str) -> str:
    from .. import reports_text

    if fmt == "html":
        from ..reports_html import render_html  # matplotlib loads only when a page is asked for

        return render_html(report)
    return {"table": reports_text.render_table, "json": reports_text.render_json, "csv": reports_text.render_csv}[fmt](report)
