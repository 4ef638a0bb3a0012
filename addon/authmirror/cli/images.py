"""`authmirror images`: every image in Kubernetes manifests or a Helm chart, optionally as the
mirror paths customers will use. The image-source options are shared with `registry test`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import load_config
from ..errors import ConfigError
from ..helmchart import render_chart
from ..imagerefs import ImageReferenceError, mirror_reference, resolve_image
from ..manifests import FoundImage, images_in_manifests
from .common import add_config_argument


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser(
        "images",
        parents=[parent],
        help="list the images in Kubernetes manifests or a Helm chart",
        description="List every image that Kubernetes manifests (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, "
        "Job, CronJob, Lists; containers, initContainers, ephemeralContainers) or a rendered Helm chart will pull.",
    )
    add_image_source_arguments(parser, required=True)
    add_config_argument(parser)
    parser.add_argument("--proxy-refs", action="store_true", help="print the mirror paths customers will use (needs the config)")
    parser.add_argument("--json", action="store_true", help="machine-readable list with where each image is used")
    parser.set_defaults(func=run)


def add_image_source_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    group = parser.add_argument_group("image sources")
    sources = group.add_mutually_exclusive_group(required=required)
    sources.add_argument("--from-manifests", metavar="FILE", help="Kubernetes YAML (multi-document streams and Lists); - for stdin")
    sources.add_argument("--from-helm", metavar="CHART", help="render CHART with `helm template` and take its images")
    group.add_argument("--values", "-f", action="append", default=[], metavar="FILE", help="values file for --from-helm (repeatable)")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="value for --from-helm (repeatable; needs the helm program)")


def collect_images(args: argparse.Namespace) -> list[FoundImage]:
    """The images of --from-manifests / --from-helm ([] when neither was given)."""
    if (args.values or args.set) and not args.from_helm:
        raise ConfigError("", "--values and --set go with --from-helm")
    if args.from_manifests:
        source = args.from_manifests
        if source == "-":
            return images_in_manifests(sys.stdin.read(), "standard input")
        try:
            text = Path(source).read_text()
        except OSError as e:
            raise ConfigError("", f"cannot read {source}: {e.strerror}") from None
        return images_in_manifests(text, source)
    if args.from_helm:
        return images_in_manifests(render_chart(args.from_helm, args.values, args.set), f"chart {args.from_helm}")
    return []


def run(args: argparse.Namespace) -> int:
    found = collect_images(args)
    config = load_config(args.config, resolve_secrets=False) if args.proxy_refs else None  # paths need no secret
    rows, unmapped = [], []
    for item in found:
        row = {"image": item.image, "uses": [u.describe() for u in item.uses]}
        if config is not None:
            try:
                resolved = resolve_image(config, item.image)
                row["proxy_ref"] = mirror_reference(config, resolved.registry, resolved.repository, resolved.ref.suffix())
            except ImageReferenceError as e:
                row["proxy_ref"] = None
                unmapped.append((item.image, e.message))
        rows.append(row)
    if args.json:
        json.dump({"images": rows}, sys.stdout, indent=2)
        print()
    else:
        for row in rows:
            ref = row.get("proxy_ref", row["image"]) if config is not None else row["image"]
            if ref:
                print(ref)
    for image, reason in unmapped:
        print(f"authmirror: {image}: {reason}", file=sys.stderr)
    if not found:
        print("authmirror: no images found", file=sys.stderr)
        return 1
    return 1 if unmapped else 0
