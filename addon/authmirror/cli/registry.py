"""`authmirror registry ...`: the command group for the vendor's upstream registries.

Each subcommand lives in its own module with `register(subparsers, parent)`; list it here.
"""

from __future__ import annotations

from . import registry_add, registry_ls, registry_rm, registry_test

SUBCOMMANDS: list = [registry_add, registry_ls, registry_rm, registry_test]


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser("registry", parents=[parent], help="the vendor's upstream registries: add, ls, rm, test")
    commands = parser.add_subparsers(dest="registry_command", metavar="SUBCOMMAND")
    commands.required = True
    for module in SUBCOMMANDS:
        module.register(commands, parent)
