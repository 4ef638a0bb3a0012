"""A stand-in for the `helm` program in tests: `helm template NAME CHART [--values F]... [--set K=V]...`
rendered by Helm's own Go engine (helm-python-sdk). The real helm binary cannot be installed on
these machines; this lets tests run authmirror's `helm template` code path for real.

    write_helm_program(bin_dir, log_path)  ->  bin_dir/helm, which logs its arguments to log_path
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml


def write_helm_program(bin_dir: Path, log_path: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    program = bin_dir / "helm"
    program.write_text(f'#!/bin/sh\nHELM_ARGS_LOG="{log_path}" exec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    program.chmod(0o755)
    return program


def write_chart(directory: Path, images: dict[str, str]) -> Path:
    """A chart with a Deployment (init + main container) and a CronJob; values name the images."""
    (directory / "templates").mkdir(parents=True, exist_ok=True)
    (directory / "Chart.yaml").write_text("apiVersion: v2\nname: acme\nversion: 0.1.0\n")
    (directory / "values.yaml").write_text(yaml.safe_dump({"images": images}))
    (directory / "templates" / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: {{ .Release.Name }}-app}\nspec:\n  template:\n    spec:\n"
        "      initContainers: [{name: init, image: {{ .Values.images.init | quote }}}]\n"
        "      containers: [{name: app, image: {{ .Values.images.app | quote }}}]\n"
    )
    (directory / "templates" / "cronjob.yaml").write_text(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: {{ .Release.Name }}-backup}\nspec:\n  schedule: '@daily'\n"
        "  jobTemplate: {spec: {template: {spec: {containers: [{name: backup, image: {{ .Values.images.backup | quote }}}]}}}}\n"
    )
    (directory / "templates" / "NOTES.txt").write_text("Installed {{ .Release.Name }}\n")
    return directory


def main(argv: list[str]) -> int:
    if os.environ.get("HELM_ARGS_LOG"):
        with open(os.environ["HELM_ARGS_LOG"], "a") as log:
            log.write(json.dumps(argv) + "\n")
    if not argv or argv[0] != "template" or len(argv) < 3:
        print("Error: this test helm only does `helm template NAME CHART`", file=sys.stderr)
        return 1
    import helm_python
    from authmirror.helmchart import merge_values

    release, chart, rest = argv[1], argv[2], argv[3:]
    values: dict = {}
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag in ("--values", "-f"):
            values = merge_values(values, yaml.safe_load(Path(value).read_text()) or {})
        elif flag == "--set":
            key, _, text = value.partition("=")
            node = values
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = text
    try:
        rendered = helm_python.Chart.load(chart).render(values=values, name=release)
    except Exception as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    for template, text in sorted(rendered.items()):
        if template.endswith(".yaml") and text.strip():
            sys.stdout.write(f"---\n# Source: {template}\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
