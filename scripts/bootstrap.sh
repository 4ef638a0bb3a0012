#!/usr/bin/env bash
# Installs what authmirror needs on a Debian machine: the system programs the demo and the tests
# run for real (docker-registry, skopeo, htpasswd, ...) and a virtualenv in .venv with the package.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# program -> Debian package (chromium: the HTML report's render test, ~110 MB download; wrk: the benchmark)
PROGRAMS="docker-registry:docker-registry skopeo:skopeo htpasswd:apache2-utils podman:podman containerd:containerd ctr:containerd nginx:nginx curl:curl chromium:chromium wrk:wrk"
missing=()
for pair in $PROGRAMS; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# nginx's JavaScript module: the cache's file server checks signed URLs with it
[ -e /usr/lib/nginx/modules/ngx_http_js_module.so ] || missing+=(libnginx-mod-http-js)

if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "bootstrap: installing ${missing[*]}" >&2
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >&2
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || {
  echo "bootstrap: authmirror needs Python 3.11 (mitmproxy 11.0.2); set PYTHON=/path/to/python3.11" >&2
  exit 1
}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the dependencies changed. One resolver run for everything (NOTES: mitmproxy pins cryptography).
stamp=".venv/.authmirror-deps"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e '.[test]' >&2
  echo "$wanted" > "$stamp"
fi
