"""`authmirror config check`: validate the config, the licenses and each registry's credentials."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from ..config import load_config
from ..errors import RegistryError
from ..licenses import LicenseStore
from ..upstreams import make_upstream
from .common import add_config_argument


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser("config", parents=[parent], help="check the configuration")
    commands = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    commands.required = True
    check = commands.add_parser("check", parents=[parent], help="validate config, licenses and registry credentials (live)")
    add_config_argument(check)
    check.add_argument("--offline", action="store_true", help="do not contact the registries")
    check.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    check.set_defaults(func=run_check)


async def check_registry(upstream) -> tuple[bool, str]:
    """Can the mirror authenticate to this registry? (The auth dance, without pulling anything.)"""
    try:
        await upstream.authorization("authmirror-config-check")
    except RegistryError as e:
        return False, e.message
    return True, f"credentials accepted ({(await upstream.challenge()).scheme} auth)"


def run_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = LicenseStore(config.licenses)
    store.load()
    results = []
    for registry in config.registries():
        if args.offline:
            results.append({"app": registry.app, "registry": registry.name, "type": registry.type, "ok": True, "message": "not checked (--offline)"})
            continue
        ok, message = asyncio.run(check_registry(make_upstream(registry)))
        results.append({"app": registry.app, "registry": registry.name, "type": registry.type, "ok": ok, "message": message})
    if args.json:
        json.dump({"config": str(config.path), "licenses": len(store.licenses), "registries": results}, sys.stdout, indent=2)
        print()
    else:
        print(f"config {config.path}: OK ({len(config.apps)} apps, {len(store.licenses)} licenses)")
        for r in results:
            mark = "OK  " if r["ok"] else "FAIL"
            print(f"  {mark} {r['app']}/{r['registry']} ({r['type']}): {r['message']}")
    return 0 if all(r["ok"] for r in results) else 1
