"""`authmirror registry ls`: the configured upstream registries, with where their secrets come
from (env:/file: references) and never the secrets themselves."""

from __future__ import annotations

import argparse
import json
import sys

from ..config import RegistryConfig, load_config
from ..secrets import Secret
from .common import add_config_argument

HIDDEN = "<literal, hidden>"


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser("ls", parents=[parent], help="list the upstream registries (no secrets shown)")
    add_config_argument(parser)
    parser.add_argument("--app", help="only this app's registries")
    parser.add_argument("--json", action="store_true", help="machine-readable list on stdout")
    parser.set_defaults(func=run)


def shown(secret: Secret | None, literal_ok: bool = False) -> str | None:
    """A secret as the config refers to it: env:/file: references as they are, literals hidden
    (a username may be shown)."""
    if secret is None:
        return None
    # Read without resolving, `source` is the raw config value.
    if secret.source.startswith(("env:", "file:")) or literal_ok:
        return secret.source
    return HIDDEN


def describe(registry: RegistryConfig) -> dict:
    credentials = {}
    if registry.username is not None:
        credentials["username"] = shown(registry.username, literal_ok=True)
    if registry.password is not None:
        credentials["password"] = shown(registry.password)
    for key, value in registry.settings.items():
        credentials[key] = shown(value) if isinstance(value, Secret) else value
    return {
        "app": registry.app,
        "name": registry.name,
        "type": registry.type,
        "url": registry.url,
        "image_prefix": f"proxy/{registry.app}/{registry.name}/",
        "credentials": credentials,
    }


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, resolve_secrets=False)  # listing needs no secret
    rows = [describe(r) for r in config.registries() if args.app is None or r.app == args.app]
    if args.json:
        json.dump({"config": str(config.path), "registries": rows}, sys.stdout, indent=2)
        print()
        return 0
    if not rows:
        print(f"no registries in {config.path}" + (f" for app {args.app}" if args.app else ""))
        return 0
    width = max(len(f"{r['app']}/{r['name']}") for r in rows)
    for row in rows:
        creds = " ".join(f"{k}={v}" for k, v in row["credentials"].items()) or "no credentials"
        print(f"{row['app'] + '/' + row['name']:<{width}}  {row['type']:<9}  {row['url']}  {creds}")
    return 0
