"""`authmirror serve`: run the mirror (mitmdump, or mitmweb with --web) with the addon loaded."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import load_config
from ..licenses import LicenseStore
from .common import add_config_argument

PROXY_SCRIPT = Path(__file__).resolve().parents[2] / "proxy.py"


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser("serve", parents=[parent], help="run the mirror", description="Run the mirror: mitmdump -s addon/proxy.py with your config.")
    add_config_argument(parser)
    parser.add_argument("--web", action="store_true", help="run mitmweb to watch pull traffic live")
    parser.add_argument("mitmproxy_args", nargs=argparse.REMAINDER, help="further mitmproxy options, after --")
    parser.set_defaults(func=run)


def mitmproxy_arguments(config: Path, extra: list[str]) -> list[str]:
    extra = extra[1:] if extra[:1] == ["--"] else extra
    return ["-s", str(PROXY_SCRIPT), "--set", f"authmirror_config={config}", *extra]


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # refuse a broken config before mitmproxy starts
    LicenseStore(config.licenses).load()
    from mitmproxy.tools import main as mitmproxy_main

    tool = mitmproxy_main.mitmweb if args.web else mitmproxy_main.mitmdump
    return tool(mitmproxy_arguments(Path(args.config).absolute(), args.mitmproxy_args)) or 0
