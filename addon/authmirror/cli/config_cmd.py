"""`authmirror config check`: validate the config, the licenses and each registry's credentials,
one line per registry with a concrete hint for each failure."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from typing import Any

from ..config import Config, load_config, with_secrets
from ..errors import ConfigError
from ..hints import config_hint, failure_kind, hint_for_error, registry_context
from ..licenses import LicenseStore
from ..secrets import resolve_secret
from ..upstreams import make_upstream
from ..upstreams.check import check_credentials
from .common import add_config_argument

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser("config", parents=[parent], help="check the configuration")
    commands = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    commands.required = True
    check = commands.add_parser("check", parents=[parent], help="validate config, licenses and registry credentials (live)")
    add_config_argument(check)
    check.add_argument("--offline", action="store_true", help="do not contact the registries")
    check.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    check.add_argument("--timeout", type=float, default=15.0, metavar="S", help="seconds to wait for each answer (default 15)")
    check.set_defaults(func=run_check)


def check_registries(config: Config, offline: bool = False, timeout: float = 15.0) -> list[dict[str, Any]]:
    """One result per registry. Each is resolved on its own, so one registry's missing secret
    does not hide the others' results."""
    results = []
    for configured in config.registries():
        result = {"app": configured.app, "registry": configured.name, "type": configured.type, "ok": True}
        try:
            registry = with_secrets(config, configured)
        except ConfigError as e:
            results.append({**result, "ok": False, "kind": "config", "message": str(e), "hint": config_hint(e)})
            continue
        if offline:
            results.append({**result, "message": "not checked (--offline)"})
            continue
        outcome = asyncio.run(check_credentials(make_upstream(registry, timeout=timeout)))
        result["message"] = outcome.message
        if not outcome.ok:
            context = registry_context(registry, config.path, timeout)
            result.update(ok=False, kind=failure_kind(outcome.error), hint=hint_for_error(registry.type, outcome.error, **context))
        results.append(result)
    return results


def load_licenses(config: Config) -> LicenseStore:
    licenses = config.licenses
    if licenses.jwt_public_key is not None:
        key = resolve_secret(licenses.jwt_public_key.source, "licenses.jwt_public_key", config.base_dir, warn_literal=False)
        licenses = dataclasses.replace(licenses, jwt_public_key=key)
    store = LicenseStore(licenses)
    store.load()
    return store


def run_check(args: argparse.Namespace) -> int:
    try:
        # Structure first, secrets unresolved: the registries' secrets are resolved one by one below.
        config = load_config(args.config, resolve_secrets=False)
        store = load_licenses(config)
    except ConfigError as e:
        return report_config_error(e, args)
    results = check_registries(config, args.offline, args.timeout)
    if args.json:
        json.dump({"config": str(config.path), "licenses": len(store.licenses), "registries": results}, sys.stdout, indent=2)
        print()
    else:
        print(f"config {config.path}: OK ({len(config.apps)} apps, {len(store.licenses)} licenses)")
        for r in results:
            mark = "OK  " if r["ok"] else "FAIL"
            print(f"  {mark} {r['app']}/{r['registry']} ({r['type']}): {r['message']}")
            if r.get("hint"):
                print(f"       hint: {r['hint']}")
    if any(r.get("kind") == "config" for r in results):
        return EXIT_CONFIG
    return EXIT_OK if all(r["ok"] for r in results) else EXIT_FAILED


def report_config_error(error: ConfigError, args: argparse.Namespace) -> int:
    if args.json:
        json.dump({"config": str(args.config), "error": str(error), "key": error.key, "hint": config_hint(error)}, sys.stdout, indent=2)
        print()
    else:
        print(f"config {args.config}: FAIL {error}")
        print(f"  hint: {config_hint(error)}")
    return EXIT_CONFIG
