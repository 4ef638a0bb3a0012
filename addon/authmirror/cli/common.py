"""Helpers shared by CLI commands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import DEFAULT_CONFIG  # not from ..addon: that would import mitmproxy for every command


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config",
        default=os.environ.get("AUTHMIRROR_CONFIG", str(DEFAULT_CONFIG)),
        help="authmirror config file (default: $AUTHMIRROR_CONFIG or examples/authmirror.yaml)",
    )


def config_path(args: argparse.Namespace) -> Path:
    return Path(args.config)
