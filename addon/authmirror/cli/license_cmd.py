"""`authmirror license ...`: add, list, revoke and remove licenses; sign, verify and hand them out.

The files come from the config (`licenses.file`, `licenses.revoked_file`, `licenses.jwt_public_key`)
unless --file / --revoked-file / --public-key name them. A running mirror picks edits up within seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import licensesigning, licensetools, pullsecret
from ..config import load_config
from ..errors import ConfigError
from ..licenses import fingerprint, parse_expiry, read_licenses_file, read_revocations
from ..reports_text import align
from ..secrets import resolve_secret
from .common import add_config_argument

DEFAULT_VENDOR_KEY = "vendor-license.pem"


@dataclass
class LicenseFiles:
    file: Path | None
    revoked_file: Path | None
    public_key_spec: str | None  # file:PATH / env:NAME / PEM, read only when a command needs it
    base_dir: Path
    apps: set[str] | None  # the config's apps, when there is a config

    @property
    def public_key_pem(self) -> str | None:
        if self.public_key_spec is None:
            return None
        return resolve_secret(self.public_key_spec, "licenses.jwt_public_key", self.base_dir, warn_literal=False).value


def license_files(args: argparse.Namespace) -> LicenseFiles:
    """The config's license files, with --file/--revoked-file/--public-key taking precedence."""
    config = None
    try:
        config = load_config(args.config, resolve_secrets=False)
    except ConfigError:
        if not (getattr(args, "file", None) or getattr(args, "public_key", None)):
            raise
    file = getattr(args, "file", None) or (config.licenses.file if config else None)
    revoked = getattr(args, "revoked_file", None) or (config.licenses.revoked_file if config else None)
    spec = None
    if getattr(args, "public_key", None):
        spec = f"file:{Path(args.public_key).absolute()}"
    elif config is not None:
        spec = (config.raw.get("licenses") or {}).get("jwt_public_key")
    return LicenseFiles(file, revoked, spec, config.base_dir if config else Path.cwd(), set(config.apps) if config else None)


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser("license", parents=[parent], help="licenses: add, ls, revoke, rm, keygen, issue, verify, pull-secret")
    commands = parser.add_subparsers(dest="license_command", metavar="SUBCOMMAND")
    commands.required = True

    def sub(name: str, help: str, func, files: bool = True) -> argparse.ArgumentParser:
        command = commands.add_parser(name, parents=[parent], help=help, description=help)
        add_config_argument(command)
        if files:
            command.add_argument("--file", type=Path, help="licenses file (default: the config's licenses.file)")
            command.add_argument("--revoked-file", type=Path, help="revocation list (default: the config's licenses.revoked_file)")
        command.set_defaults(func=func)
        return command

    add = sub("add", "add a license to the licenses file; prints its id (the customer's password)", run_add)
    add.add_argument("--customer", required=True)
    add.add_argument("--app", action="append", required=True, dest="apps", help="an app the license covers (repeatable)")
    add.add_argument("--expires", help="last valid day (YYYY-MM-DD, UTC) or an ISO datetime; default: never")
    add.add_argument("--images", nargs="+", metavar="PATTERN", help="allow only these images (globs over the repository, e.g. 'vendor/app*')")
    add.add_argument("--note", help="a free-text note kept with the license")
    add.add_argument("--id", help="use this id instead of a random one (at least 8 characters)")
    add.add_argument("--json", action="store_true")

    ls = sub("ls", "list licenses with the fingerprints pull events and reports show", run_ls)
    ls.add_argument("--show-ids", action="store_true", help="also print the license ids (secrets)")
    ls.add_argument("--json", action="store_true")

    revoke = sub("revoke", "revoke a license (id, fingerprint, or a signed license token)", run_revoke)
    revoke.add_argument("license", metavar="LICENSE")
    rm = sub("rm", "remove a license from the licenses file", run_rm)
    rm.add_argument("license", metavar="LICENSE", help="id or fingerprint")

    keygen = sub("keygen", "make the vendor's key pair for signed licenses", run_keygen, files=False)
    keygen.add_argument("--out", type=Path, default=Path(DEFAULT_VENDOR_KEY), help=f"private key file (default {DEFAULT_VENDOR_KEY}, mode 0600)")
    keygen.add_argument("--public-out", type=Path, help="public key file (default: the private key's name with .pub)")
    keygen.add_argument("--algorithm", choices=("ES256", "RS256"), default="ES256")
    keygen.add_argument("--force", action="store_true", help="replace existing key files")

    issue = sub("issue", "issue a signed license (JWT) with the vendor key", run_issue, files=False)
    issue.add_argument("--key", type=Path, default=Path(DEFAULT_VENDOR_KEY), help=f"the vendor's private key (default {DEFAULT_VENDOR_KEY})")
    issue.add_argument("--customer", required=True)
    issue.add_argument("--app", action="append", required=True, dest="apps", help="an app the license covers (repeatable)")
    issue.add_argument("--expires", required=True, help="last valid day (YYYY-MM-DD, UTC), an ISO datetime, or 'never'")
    issue.add_argument("--images", nargs="+", metavar="PATTERN", help="allow only these images (globs over the repository)")
    issue.add_argument("--id", help="the license id (sub claim); default: random")
    issue.add_argument("--json", action="store_true", help="print the token and its claims as JSON")

    verify = sub("verify", "explain what a license token grants and whether the mirror accepts it", run_verify)
    verify.add_argument("token", metavar="TOKEN", help="the signed license, or - to read it from stdin")
    verify.add_argument("--public-key", type=Path, help="the vendor's public key (default: the config's licenses.jwt_public_key)")
    verify.add_argument("--json", action="store_true")

    secret = sub("pull-secret", "print a Kubernetes image pull secret (or docker config.json) holding a license", run_pull_secret)
    secret.add_argument("--license", required=True, help="the license id or signed token, a fingerprint from `license ls`, or - to read it from stdin")
    secret.add_argument("--server", required=True, help="the mirror's host[:port] as customers reach it")
    secret.add_argument("--namespace", help="Kubernetes namespace for the Secret")
    secret.add_argument("--name", default="authmirror-pull", help="Secret name (default authmirror-pull)")
    secret.add_argument("--username", default="customer", help="registry username (any; the license is the password)")
    secret.add_argument("--format", choices=("secret", "docker-config"), default="secret", help="secret: Kubernetes YAML (default); docker-config: ~/.docker/config.json")


# -- file licenses ------------------------------------------------------------------------------


def _licenses_file(files: LicenseFiles) -> Path:
    if files.file is None:
        raise ConfigError("licenses.file", "this config has no licenses file; pass --file PATH")
    return files.file


def expires_value(text: str | None) -> dt.date | str | None:
    """A date stays a date in the file (`expires: 2027-06-30`); a datetime is kept as written."""
    if text is None:
        return None
    parse_expiry(text, "--expires")  # refuse what the mirror could not read
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return text


def run_add(args: argparse.Namespace) -> int:
    files = license_files(args)
    expires = expires_value(args.expires)
    if files.apps is not None and set(args.apps) - files.apps:
        print(f"authmirror: warning: app(s) not in the config: {', '.join(sorted(set(args.apps) - files.apps))}", file=sys.stderr)
    license = licensetools.add_license(_licenses_file(files), args.customer, args.apps, expires, args.images, args.note, args.id)
    if license.expired(time.time()):
        print(f"authmirror: warning: this license expired on {license.expiry_text}: the mirror will refuse it", file=sys.stderr)
    if args.json:
        print(json.dumps({"id": license.id, "fingerprint": license.fingerprint, "customer": license.customer, "apps": sorted(license.apps), "expires": license.expiry_text}))
    else:
        print(f"added license for {license.customer} ({license.fingerprint}), expires {license.expiry_text}")
        print(f"license id (the customer's registry password): {license.id}")
    return 0


def run_ls(args: argparse.Namespace) -> int:
    files = license_files(args)
    rows = licensetools.list_licenses(files.file, files.revoked_file, show_ids=args.show_ids)
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return 0
    header = ["fingerprint", "customer", "apps", "expires", "status", "images"] + (["id"] if args.show_ids else [])
    cells = [[r.fingerprint, r.customer, ",".join(r.apps) or "-", r.expires, r.status, ",".join(r.images) or "*"] + ([r.id] if args.show_ids else []) for r in rows]
    print("\n".join(align(header, cells)))
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    files = license_files(args)
    print(licensetools.revoke_license(files.file, args.license, files.revoked_file))
    return 0


def run_rm(args: argparse.Namespace) -> int:
    files = license_files(args)
    removed = licensetools.remove_license(_licenses_file(files), args.license)
    print(f"removed the license of {removed.customer} ({removed.fingerprint}) from {files.file}")
    return 0


# -- signed licenses ------------------------------------------------------------------------------


def run_keygen(args: argparse.Namespace) -> int:
    public_out = args.public_out or args.out.with_suffix(".pub")
    kid = licensesigning.generate_keypair(args.out, public_out, args.algorithm, args.force)
    print(f"wrote {args.out} (private, keep it secret) and {public_out} (public), key id {kid}")
    print(f"mirror config:  licenses: {{jwt_public_key: file:{public_out}}}")
    return 0


def run_issue(args: argparse.Namespace) -> int:
    key = licensesigning.load_private_key(args.key)
    expires = licensesigning.expiry_from_text(args.expires)
    token = licensesigning.issue_license(key, args.customer, args.apps, expires, args.images, args.id)
    verdict = licensesigning.explain(token, None)
    if args.json:
        print(json.dumps({"token": token, **verdict.grants}))
    else:
        grants = verdict.grants
        print(f"signed license for {grants['customer']} ({grants['fingerprint']}), apps {', '.join(grants['apps'])}, expires {grants['expires']}", file=sys.stderr)
        print(token)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    token = sys.stdin.read().strip() if args.token == "-" else args.token.strip()
    files = license_files(args)
    revoked = read_revocations(files.revoked_file) if files.revoked_file and files.revoked_file.exists() else frozenset()
    if token.count(".") != 2 and files.file is not None:
        return _verify_file_license(token, files, args.json)
    pem = files.public_key_pem
    verdict = licensesigning.explain(token, pem, licensesigning.revocation_fingerprints(revoked) | revoked, files.apps)
    if verdict.valid and pem:
        refusal = licensesigning.mirror_accepts(token, licensesigning.public_key_config(pem, files.revoked_file))
        if refusal:  # the mirror has the last word; say so if our explanation missed something
            verdict.valid = False
            verdict.reasons.append(f"the mirror refuses it: {refusal}")
    if args.json:
        print(json.dumps(verdict.as_dict(), indent=2))
    else:
        print(f"{'VALID' if verdict.valid else 'NOT VALID'}: signed license" + (f" ({verdict.header.get('alg')}, key {verdict.header.get('kid')})" if verdict.header else ""))
        for key, value in verdict.grants.items():
            if key != "license_id":
                print(f"  {key}: {', '.join(value) if isinstance(value, list) else value}")
        for reason in verdict.reasons:
            print(f"  why not: {reason}")
        for note in verdict.notes:
            print(f"  note: {note}")
    return 0 if verdict.valid else 1


def _verify_file_license(license_id: str, files: LicenseFiles, as_json: bool) -> int:
    """A plain license id: explain its entry in the licenses file."""
    rows = {row.fingerprint: row for row in licensetools.list_licenses(files.file, files.revoked_file)}
    row = rows.get(fingerprint(license_id))
    valid = row is not None and row.status == "active"
    reason = "not in the licenses file" if row is None else ("" if valid else row.status)
    if as_json:
        print(json.dumps({"valid": valid, "reasons": [reason] if reason else [], "grants": row.as_dict() if row else {}}, indent=2))
    else:
        print(f"{'VALID' if valid else 'NOT VALID'}: license from {files.file}" + (f": {reason}" if reason else ""))
        if row:
            print(f"  customer: {row.customer}\n  apps: {', '.join(row.apps)}\n  images: {', '.join(row.images) or 'every image of its apps'}\n  expires: {row.expires}\n  fingerprint: {row.fingerprint}")
    return 0 if valid else 1


# -- pull secrets ---------------------------------------------------------------------------------


def resolve_license(ref: str, files: LicenseFiles) -> str:
    """A fingerprint from `license ls` stands for the license id in the file."""
    if not (ref.startswith("lic_") and len(ref) == len(fingerprint("x"))):
        return ref
    if files.file is None or not files.file.exists():
        raise ConfigError("licenses.file", "a fingerprint needs the licenses file to find the license id")
    for license in read_licenses_file(files.file):
        if license.fingerprint == ref:
            if license.revoked:
                print(f"authmirror: warning: the license of {license.customer} is revoked", file=sys.stderr)
            return license.id
    raise licensetools.LicenseNotFound(f"no license with fingerprint {ref} in {files.file}")


def run_pull_secret(args: argparse.Namespace) -> int:
    try:
        files = license_files(args)
    except ConfigError:
        files = LicenseFiles(args.file, args.revoked_file, None, Path.cwd(), None)  # a literal license needs no config
    license = resolve_license(sys.stdin.read().strip() if args.license == "-" else args.license, files)
    if args.format == "docker-config":
        print(json.dumps(pullsecret.docker_config(args.server, license, args.username), indent=2))
    else:
        sys.stdout.write(pullsecret.kubernetes_secret(args.server, license, args.name, args.namespace, args.username))
    return 0

