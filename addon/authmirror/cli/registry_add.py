"""`authmirror registry add TYPE`: explain what the type needs, ask (or take flags), check the
credentials live, and save the registry to the config with secrets as env:/file: references."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ConfigError
from ..hints import config_hint
from ..onboarding.add import AddRequest, add_registry, explain_only
from ..onboarding.guides import GUIDES, all_questions
from ..onboarding.prompts import Prompter
from .common import add_config_argument

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser(
        "add",
        parents=[parent],
        help="add an upstream registry, guided (explains, asks, checks live, saves)",
        description="Add an upstream registry to the config. Interactive by default (answers from the "
        "terminal or piped stdin); every answer can be given as a flag instead. Secrets: env:NAME, "
        "file:PATH, or a value (stored in a 0600 file next to the config, never in it).",
    )
    parser.add_argument("type", choices=list(GUIDES), metavar="TYPE", help=f"registry type: {', '.join(GUIDES)}")
    add_config_argument(parser)
    parser.add_argument("--app", help="app the registry belongs to (licenses name apps)")
    parser.add_argument("--name", help="registry name, as it appears in image paths")
    for question, types in all_questions():
        metavar = {"bool": "yes|no", "secret": "SECRET", "keyfile": "PATH"}.get(question.kind, question.key.upper())
        parser.add_argument(question.flag, dest=f"value_{question.key}", metavar=metavar, help=f"{question.prompt} ({', '.join(types)})")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin (implies --no-input)")
    parser.add_argument("--auth-host", action="append", default=[], help="another host allowed to receive the credentials as token realm")
    parser.add_argument("--secrets-dir", help="where typed-in secrets are stored (default: secrets/ next to the config)")
    parser.add_argument("--no-input", action="store_true", help="never ask: missing required values are an error")
    parser.add_argument("--force", action="store_true", help="save even when the live check fails")
    parser.add_argument("--replace", action="store_true", help="replace a registry of the same name")
    parser.add_argument("--explain", action="store_true", help="only print what this type needs, then exit")
    parser.add_argument("--json", action="store_true", help="result as JSON on stdout (guide and prompts go to stderr)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = sys.stderr if args.json else sys.stdout
    prompter = Prompter(sys.stdin, out)
    if args.explain:
        explain_only(args.type, prompter)
        return EXIT_OK
    values = {key[len("value_"):]: value for key, value in vars(args).items() if key.startswith("value_") and value is not None}
    if args.password_stdin:
        values["password"] = sys.stdin.read().rstrip("\r\n")
    secret_keys = {q.key for q, _ in all_questions() if q.kind == "secret"}
    literal = tuple(
        f"--{k.replace('_', '-')}" for k, v in values.items()
        if k in secret_keys and not v.startswith(("env:", "file:")) and not (k == "password" and args.password_stdin)
    )
    request = AddRequest(
        type=args.type,
        config_path=Path(args.config).absolute(),
        app=args.app,
        name=args.name,
        values=values,
        auth_hosts=args.auth_host,
        secrets_dir=args.secrets_dir,
        interactive=not (args.no_input or args.password_stdin),
        force=args.force,
        replace=args.replace,
        literal_flags=literal,
    )
    try:
        result = add_registry(request, prompter)
    except ConfigError as e:
        print(f"authmirror: {e}", file=sys.stderr)
        print(f"  hint: {config_hint(e)}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        json.dump(result.summary(), sys.stdout, indent=2)
        print()
    return EXIT_OK if result.saved else EXIT_FAILED
