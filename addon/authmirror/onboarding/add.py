"""`registry add`: explain, ask (or take flags), check live, then save the registry to the config.

Order matters: nothing is written before the live check passed (or --force), and the config only
ever receives references (`env:NAME`, `file:PATH`); values typed in are stored in 0600 files.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..config import COMPONENT_RE, parse_registry_entry
from ..errors import ConfigError
from ..hints import hint_for_error, registry_context
from ..upstreams import make_upstream
from ..upstreams.check import CheckResult, check_credentials
from . import configfile
from .guides import GUIDES, SECRET_FORMS, Guide, Question
from .prompts import Prompter, parse_bool

MAX_TRIES = 3
TYPED_IN = "(typed in: stored in a secrets file on save)"


@dataclass
class AddRequest:
    type: str
    config_path: Path
    app: str | None = None
    name: str | None = None
    values: dict[str, str] = field(default_factory=dict)  # from flags, keyed by config key
    auth_hosts: list[str] = field(default_factory=list)
    secrets_dir: str | None = None
    interactive: bool = True
    force: bool = False
    replace: bool = False
    literal_flags: tuple[str, ...] = ()  # keys whose secret was given literally on the command line


@dataclass
class AddResult:
    app: str
    name: str
    entry: dict[str, Any]  # as written: references only
    check: CheckResult
    saved: bool
    secret_files: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "name": self.name,
            "saved": self.saved,
            "check": {"ok": self.check.ok, "message": self.check.message},
            "entry": self.entry,
            "secret_files": [str(p) for p in self.secret_files],
            "image_prefix": f"proxy/{self.app}/{self.name}/",
        }


@dataclass
class Secret:
    """An answer for a secret key: its value (for the check) and how the config refers to it."""

    value: str
    reference: str | None  # None: typed in, to be stored in a secrets file


def add_registry(request: AddRequest, prompter: Prompter) -> AddResult:
    guide = GUIDES[request.type]
    check_flags(guide, request)
    document = configfile.read_document(request.config_path)
    if request.interactive:
        explain(guide, prompter)
    app = request.app or ask_app(document, request, prompter)
    name = request.name or ask_value(prompter, request, Question("name", "Registry name (appears in image paths)", default=free_name(document, app, guide.default_name)), {})
    validate_names(app, name)
    if not request.replace and configfile.find_registry(document, name, app):
        # Before anything is asked or written: a typed secret would overwrite the existing one's file.
        raise ConfigError("--name", f"registry {name!r} already exists in app {app!r} (use --replace, or `authmirror registry rm {name}`)")
    answers: dict[str, Any] = {}
    advanced = [q for q in guide.extra_flags_only if q.key in request.values]
    for question in [*guide.questions, *advanced]:
        if not question.applies(answers):
            continue
        answer = answer_for(question, request, prompter, answers)
        if answer not in (None, "", False):
            answers[question.key] = answer

    entry_for_check = build_entry(name, guide.type, answers, request.auth_hosts, for_check=True)
    index = len(configfile.registries_of(document, app) or [])
    with quiet_literal_warnings():
        registry = parse_registry_entry(app, index, entry_for_check, request.config_path.parent)
    prompter.say(f"Checking the credentials against {registry.url} ...")
    check = asyncio.run(check_credentials(make_upstream(registry)))
    if check.ok:
        prompter.say(f"  OK: {check.message}")
    else:
        prompter.say(f"  FAILED: {check.message}")
        prompter.say(f"  hint: {hint_for_error(guide.type, check.error, **registry_context(registry, request.config_path))}")
    entry = build_entry(name, guide.type, answers, request.auth_hosts, for_check=False)
    if not check.ok and not request.force:
        prompter.say("Not saved: fix the problem and run the command again, or add --force to save anyway.")
        return AddResult(app, name, entry, check, saved=False)

    secrets_dir = configfile.secrets_dir_for(request.config_path, request.secrets_dir)
    written = store_typed_secrets(answers, entry, app, name, secrets_dir, request.config_path)
    created = not request.config_path.exists()
    configfile.put_registry(document, app, entry, replace=request.replace)
    configfile.write_document(request.config_path, document)
    result = AddResult(app, name, entry, check, saved=True, secret_files=written)
    report_saved(result, request, prompter)
    if created:
        prompter.say(f"Created {request.config_path}: customers' licenses go in licenses.yaml next to it.")
    if guide.after_save is not None:
        prompter.say(guide.after_save(registry))
    return result


def check_flags(guide: Guide, request: AddRequest) -> None:
    known = {q.key for q in guide.questions + guide.extra_flags_only}
    for key in request.values:
        if key not in known:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(flag, f"does not apply to type {guide.type} (it takes: {', '.join(sorted(known)) or 'no credentials'})")


def explain(guide: Guide, prompter: Prompter) -> None:
    prompter.say(f"== {guide.title} (type {guide.type}) ==")
    prompter.say(guide.explanation)
    if any(q.kind in ("secret", "keyfile") for q in guide.questions):
        prompter.say()
        prompter.say(SECRET_FORMS)
    prompter.say()


def ask_app(document, request: AddRequest, prompter: Prompter) -> str:
    apps = [str(a) for a in (document.get("apps") or {})]
    default = apps[0] if len(apps) == 1 else None
    hint = f"existing: {', '.join(apps)}" if apps else "a new app; licenses name the apps they may pull"
    return ask_value(prompter, request, Question("app", "App these images belong to", default=default, help=hint), {})


def free_name(document, app: str, base: str) -> str:
    taken = {str(e.get("name")) for e in configfile.registries_of(document, app) or [] if isinstance(e, dict)}
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def validate_names(app: str, name: str) -> None:
    for what, value in (("--app", app), ("--name", name)):
        if not COMPONENT_RE.match(value):
            raise ConfigError(what, f"{value!r}: use lowercase letters, digits and . _ - (it appears in image paths)")


def ask_value(prompter: Prompter, request: AddRequest, question: Question, answers: dict[str, Any]) -> str:
    default = question.default_for(answers)
    if not request.interactive:
        if default is None and question.required:
            raise ConfigError(question.flag, f"required for type {request.type} ({question.prompt})")
        return default or ""
    while True:
        answer = prompter.ask(question.prompt, default, help=question.help)
        if answer or not question.required:
            return answer
        prompter.say("  an answer is required")


def answer_for(question: Question, request: AddRequest, prompter: Prompter, answers: dict[str, Any]) -> Any:
    """The answer to one question, from its flag or by asking; secrets resolved for the check."""
    given = request.values.get(question.key)
    if question.kind == "bool":
        if given is not None:
            return parse_bool(given, question.flag)
        if not request.interactive:
            return parse_bool(question.default_for(answers) or "no", question.flag)
        return prompter.ask_bool(question.prompt, parse_bool(question.default_for(answers) or "no", question.flag))
    if question.kind not in ("secret", "keyfile"):
        return given if given is not None else ask_value(prompter, request, question, answers)
    if given is not None:
        return read_secret(given, question, request.config_path)
    for attempt in range(MAX_TRIES):
        if not request.interactive:
            if question.required:
                raise ConfigError(question.flag, f"required for type {request.type} ({question.prompt})")
            return None
        raw = prompter.ask(question.prompt, secret=question.kind == "secret", help=question.help)
        if not raw:
            if not question.required:
                return None
            prompter.say("  an answer is required")
            continue
        try:
            return read_secret(raw, question, request.config_path)
        except ConfigError as e:
            prompter.say(f"  {e.message}")
    raise ConfigError(question.flag, f"no usable answer after {MAX_TRIES} tries")


def read_secret(raw: str, question: Question, config_path: Path) -> Secret:
    """env:NAME and file:PATH stay references (read now for the check); anything else was typed in.
    A key file question takes a bare path too."""
    if raw.startswith("env:"):
        value = os.environ.get(raw[4:])
        if value is None:
            raise ConfigError(question.flag, f"environment variable {raw[4:]} is not set")
        return Secret(value, raw)
    if raw.startswith("file:") or question.kind == "keyfile":
        path = Path(os.path.expanduser(raw[5:] if raw.startswith("file:") else raw)).absolute()
        try:
            value = path.read_text().strip()
        except OSError as e:
            raise ConfigError(question.flag, f"cannot read {path}: {e.strerror}") from None
        return Secret(value, configfile.reference_to(path, config_path))
    return Secret(raw, None)


def build_entry(name: str, registry_type: str, answers: dict[str, Any], auth_hosts: list[str], *, for_check: bool) -> dict[str, Any]:
    """The registry entry: with secret values (for the in-memory check) or with references (to save)."""
    entry: dict[str, Any] = {"name": name, "type": registry_type}
    for key, answer in answers.items():
        if isinstance(answer, Secret):
            entry[key] = answer.value if for_check else (answer.reference or TYPED_IN)
        else:
            entry[key] = answer
    if auth_hosts:
        entry["auth_hosts"] = list(auth_hosts)
    return entry


def secret_filename(app: str, name: str, key: str) -> str:
    return f"{app}-{name}-{key.replace('_', '-')}"


def store_typed_secrets(answers: dict[str, Any], entry: dict[str, Any], app: str, name: str, secrets_dir: Path, config_path: Path) -> list[Path]:
    """Write each typed-in secret to its own 0600 file and point the entry at it."""
    written = []
    for key, answer in answers.items():
        if isinstance(answer, Secret) and answer.reference is None:
            path = configfile.write_secret(secrets_dir, secret_filename(app, name, key), answer.value)
            entry[key] = configfile.reference_to(path, config_path)
            written.append(path)
    return written


def report_saved(result: AddResult, request: AddRequest, prompter: Prompter) -> None:
    if not result.check.ok:
        prompter.say("Saved despite the failed check (--force).")
    if request.literal_flags:
        prompter.say(
            f"warning: {', '.join(request.literal_flags)} given on the command line, where other users of this host "
            "can see it (ps); prefer env:NAME, file:PATH or --password-stdin"
        )
    prompter.say(f"Saved registry '{result.name}' of app '{result.app}' to {request.config_path}:")
    for key, value in result.entry.items():
        prompter.say(f"  {key}: {value}")
    for path in result.secret_files:
        prompter.say(f"  secret stored in {path} (mode 0600)")
    prompter.say(f"Customers pull MIRROR/proxy/{result.app}/{result.name}/<repository>:<tag> (restart the mirror to load it).")
    prompter.say(f"Check one image: authmirror registry test --registry {result.name} --image <repository>:<tag>")


@contextmanager
def quiet_literal_warnings() -> Iterator[None]:
    """The in-memory check holds typed secrets as literals; the config-file warning about literal
    secrets does not apply (they are stored as file: references on save)."""

    def not_literal_warning(record: logging.LogRecord) -> bool:
        return "secret given literally" not in record.getMessage()

    logger = logging.getLogger("authmirror.config")
    logger.addFilter(not_literal_warning)
    try:
        yield
    finally:
        logger.removeFilter(not_literal_warning)


def explain_only(registry_type: str, prompter: Prompter) -> None:
    explain(GUIDES[registry_type], prompter)

