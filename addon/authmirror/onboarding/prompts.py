"""Asking questions on a terminal or from piped stdin; secrets are never echoed."""

from __future__ import annotations

import getpass
from typing import TextIO

from ..errors import AuthMirrorError

YES = ("y", "yes", "true", "1", "on")
NO = ("n", "no", "false", "0", "off")


class NoAnswer(AuthMirrorError):
    """stdin ended before a required answer."""


class Prompter:
    def __init__(self, stdin: TextIO, out: TextIO):
        self.stdin = stdin
        self.out = out

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    def ask(self, prompt: str, default: str | None = None, secret: bool = False, help: str = "") -> str:
        """One answer; empty input takes the default. Secrets: no echo on a terminal; from a pipe
        the line is read as it is (nothing is printed back either way)."""
        if help:
            self.say(f"  ({help})")
        shown = f" [{default}]" if default not in (None, "") else ""
        text = f"{prompt}{shown}: "
        if secret and self.stdin.isatty():
            answer = getpass.getpass(text, stream=self.out)
        else:
            self.out.write(text)
            self.out.flush()
            line = self.stdin.readline()
            if line == "":
                self.say()
                if default is not None:
                    return default
                raise NoAnswer(f"no answer for {prompt!r}: stdin ended (pass it as a flag, see --help)")
            answer = line.rstrip("\r\n")
            if not self.stdin.isatty():
                # A piped answer shows nowhere else: show it after its prompt (never a secret).
                self.say("" if secret else answer.strip())
        answer = answer.strip()
        return answer if answer else (default or "")

    def ask_bool(self, prompt: str, default: bool) -> bool:
        while True:
            answer = self.ask(f"{prompt} (yes/no)", "yes" if default else "no").lower()
            if answer in YES:
                return True
            if answer in NO:
                return False
            self.say("  please answer yes or no")


def parse_bool(value: str, flag: str) -> bool:
    lowered = value.strip().lower()
    if lowered in YES:
        return True
    if lowered in NO:
        return False
    raise ValueError(f"{flag} takes yes or no, not {value!r}")
