"""`authmirror registry test`: prove images pullable from the vendor's registry (or through a
running mirror, as a customer), step by step, with a diagnosis for each failure."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from ..config import load_config
from ..errors import ConfigError
from ..registrytest import ProgressLine, TestOptions, exit_code, render_result, render_summary, run_tests, to_json
from ..registrytest.report import marks_for
from ..secrets import resolve_secret
from .common import add_config_argument
from .images import add_image_source_arguments, collect_images

EPILOG = """\
REF, direct mode: the upstream reference (127.0.0.1:5001/vendor/app:1.0,
123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1.0), the customer's mirror path, or with
--registry [APP/]NAME just REPOSITORY:TAG. With --via-proxy: the customer's full reference
through the mirror (mirror.example.com/proxy/acme/vendor/app:1.0).

exit codes:
  0  every image is pullable
  1  image problems: repository, tag, manifest or blob missing, digest mismatch
  2  credential/config problems: bad config or reference, credentials refused, missing
     permission, license refused or not entitled
  3  network problems: DNS, connect, TLS, timeouts, rate limits, registry errors (5xx)
  When images fail for different reasons, the first of 2, 3, 1 that applies wins.
"""


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser(
        "test",
        parents=[parent],
        help="check that images are pullable, step by step",
        description="Check that images are pullable: directly from the vendor's registry with the configured "
        "credentials, or through a running mirror with a customer's license (--via-proxy).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--image", action="append", default=[], metavar="REF", help="image to check (repeatable)")
    add_image_source_arguments(parser)
    add_config_argument(parser)
    parser.add_argument("--registry", metavar="[APP/]NAME", help="the configured registry REF is in (REF is then REPOSITORY:TAG)")
    parser.add_argument("--via-proxy", metavar="URL", help="check through the mirror at URL, as a customer's runtime pulls")
    parser.add_argument(
        "--license", metavar="L",
        help="license for --via-proxy: the id, env:NAME or file:PATH (default: env:AUTHMIRROR_LICENSE)",
    )
    parser.add_argument("--deep", action="store_true", help="read every blob in full and check its digest (default: HEAD)")
    parser.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    parser.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE (for CI artifacts)")
    parser.add_argument("--concurrency", type=int, default=8, metavar="N", help="images checked at once (default 8)")
    parser.add_argument("--timeout", type=float, default=15.0, metavar="S", help="seconds to wait for each answer (default 15)")
    parser.set_defaults(func=run)


def license_value(raw: str | None) -> str:
    raw = raw or ("env:AUTHMIRROR_LICENSE" if "AUTHMIRROR_LICENSE" in os.environ else None)
    if not raw:
        raise ConfigError("--license", "--via-proxy needs --license (the id, env:NAME or file:PATH) or $AUTHMIRROR_LICENSE")
    return resolve_secret(raw, "--license", Path.cwd(), warn_literal=False).value


def run(args: argparse.Namespace) -> int:
    images = list(dict.fromkeys([*args.image, *(found.image for found in collect_images(args))]))
    if not images:
        raise ConfigError("", "nothing to check: give --image REF (repeatable), --from-manifests FILE or --from-helm CHART")
    options = TestOptions(
        deep=args.deep,
        timeout=args.timeout,
        concurrency=args.concurrency,
        registry_name=args.registry,
        via_proxy=args.via_proxy,
        license=license_value(args.license) if args.via_proxy else None,
    )
    if args.via_proxy and args.registry:
        raise ConfigError("--registry", "goes with direct checks; with --via-proxy give the customer's full reference")
    # Secrets unresolved: each image resolves only its own registry's, so one registry's missing
    # env: or file: secret fails the images that need it, not the whole run.
    config = None if args.via_proxy else load_config(args.config, resolve_secrets=False)
    results = asyncio.run(run_tests(images, options, config, ProgressLine()))
    report = to_json(results, "via-proxy" if args.via_proxy else "direct")
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        marks = marks_for(sys.stdout)
        many = len(results) > 1
        blocks = [render_result(r, marks, verbose=not many) for r in results]
        print(("\n\n" if not many else "\n").join(blocks))
        if many:
            print()
            print(render_summary(results, marks))
    return exit_code(results)
