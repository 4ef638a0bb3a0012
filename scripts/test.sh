#!/usr/bin/env bash
# Runs the whole test suite (unit, addon and end-to-end tests against a real registry with real
# clients), after installing everything it needs. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
