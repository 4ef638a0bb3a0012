"""`authmirror` entry point: argparse subcommands sharing a -v parent; one top-level error catch."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..errors import AuthMirrorError, ConfigError
from . import config_cmd, images, license_cmd, logs, registry, report, serve

# Each command module has register(subparsers, parent) and sets `func` on its parser.
COMMANDS = [serve, config_cmd, registry, images, report, logs, license_cmd]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr (-vv for debug)")
    parser = argparse.ArgumentParser(prog="authmirror", description="Authenticating mirror for container images.")
    parser.add_argument("--version", action="version", version=f"authmirror {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in COMMANDS:
        module.register(subparsers, parent)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"authmirror: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except AuthMirrorError as e:
        print(f"authmirror: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def entrypoint() -> None:
    sys.exit(main())
