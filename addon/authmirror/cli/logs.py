"""`authmirror logs`: the latest pull events, readably; `--follow` keeps printing new ones."""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from pathlib import Path

from ..logreader import Follower, ReadStats, log_files, open_log, parse_line
from ..reports import is_failure
from ..reports_text import event_line
from .common import add_config_argument
from .report import default_logs


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser("logs", parents=[parent], help="show pull events readably (tail, --follow)")
    add_config_argument(parser)
    parser.add_argument("--log", type=Path, metavar="PATH", help="pull log file (default: the config's pull_log)")
    parser.add_argument("-n", "--lines", type=int, default=20, metavar="N", help="how many past events to show first (default 20)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new events (across log rotations) until interrupted")
    parser.add_argument("--customer", help="only this customer (case-insensitive substring) or license fingerprint (lic_...)")
    parser.add_argument("--failed", action="store_true", help="only failures (not the 401 challenge that starts every pull)")
    parser.add_argument("--json", action="store_true", help="print the events' JSON lines as they are")
    parser.set_defaults(func=run)


def matcher(customer: str | None, failed: bool):
    wanted = customer.lower() if customer else None

    def matches(event: dict) -> bool:
        if failed and not is_failure(event):
            return False
        if wanted is not None:
            return wanted == str(event.get("license") or "").lower() or wanted in str(event.get("customer") or "").lower()
        return True

    return matches


def run(args: argparse.Namespace) -> int:
    path = args.log or default_logs(args.config)[0]
    matches = matcher(args.customer, args.failed)
    stats = ReadStats()
    recent: deque[dict] = deque(maxlen=max(args.lines, 0))
    follower = Follower(path)  # opened first: what is written from now on is followed, nothing in between is lost
    try:
        history = log_files(path)
        if path.exists():
            history = history[:-1]  # the current file is read through the follower
        for rotated in history:
            with open_log(rotated) as stream:
                recent.extend(e for e in (parse_line(line, stats) for line in stream) if e is not None and matches(e))
        recent.extend(e for e in (parse_line(line, stats) for line in follower.read_available()) if e is not None and matches(e))
        for event in recent:
            show(event, args.json)
        if args.follow:
            for line in follower.follow():
                event = parse_line(line, stats)
                if event is not None and matches(event):
                    show(event, args.json)
    except KeyboardInterrupt:
        pass
    finally:
        follower.close()
    return 0


def show(event: dict, raw: bool) -> None:
    print(json.dumps(event, separators=(",", ":"), ensure_ascii=False) if raw else event_line(event), flush=True)
