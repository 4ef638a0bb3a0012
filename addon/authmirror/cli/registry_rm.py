"""`authmirror registry rm NAME`: remove an upstream registry from the config (and the secret
files `registry add` stored for it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from ..onboarding import configfile
from .common import add_config_argument


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser("rm", parents=[parent], help="remove an upstream registry from the config")
    parser.add_argument("registry", metavar="NAME", help="the registry's name")
    add_config_argument(parser)
    parser.add_argument("--app", help="the registry's app (needed when several apps have a registry of that name)")
    parser.add_argument("--secrets-dir", help="where `registry add` stored secrets (default: secrets/ next to the config)")
    parser.add_argument("--keep-secrets", action="store_true", help="leave its secret files in place")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.config).absolute()
    if not path.exists():
        raise ConfigError("", f"config file {path} does not exist")
    document = configfile.read_document(path)
    found = configfile.find_registry(document, args.registry, args.app)
    if not found:
        where = f" in app {args.app!r}" if args.app else ""
        print(f"authmirror: no registry {args.registry!r}{where} in {path}", file=sys.stderr)
        return 1
    if len(found) > 1:
        apps = ", ".join(app for app, _, _ in found)
        print(f"authmirror: registry {args.registry!r} exists in apps {apps}: choose one with --app", file=sys.stderr)
        return 2
    app, index, _ = found[0]
    entry = dict(configfile.remove_registry(document, app, index))
    secrets_dir = configfile.secrets_dir_for(path, args.secrets_dir)
    still_used = {
        f for _, _, other in configfile.find_all(document) for f in configfile.owned_secret_files(other, path, secrets_dir)
    }
    configfile.write_document(path, document)
    print(f"removed registry '{args.registry}' of app '{app}' from {path}")
    if not args.keep_secrets:
        for secret_file in configfile.owned_secret_files(entry, path, secrets_dir):
            if secret_file not in still_used and secret_file.exists():
                secret_file.unlink()
                print(f"deleted its secret file {secret_file}")
    return 0
