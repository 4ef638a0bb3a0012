#!/usr/bin/env bash
# The demo: a real upstream registry, the mirror in front of it, and real pulls through it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
