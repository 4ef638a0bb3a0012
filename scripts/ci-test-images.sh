#!/usr/bin/env bash
# CI gate for a release: render the chart (or read the manifests), test that every image is
# pullable from the vendor's registries with the mirror's credentials and, when a mirror URL and
# a license are given, through the mirror exactly as a customer pulls. Fails the build with a
# readable report (also appended to $GITHUB_STEP_SUMMARY on GitHub Actions).
#
#   scripts/ci-test-images.sh --from-helm CHART [--values FILE]... [--set K=V]...
#   scripts/ci-test-images.sh --from-manifests FILE
#
# Environment:
#   AUTHMIRROR_CONFIG     the mirror's config (registries and credentials), default examples/authmirror.yaml
#   AUTHMIRROR_PROXY_URL  optional: a running mirror to pull through as a customer ...
#   AUTHMIRROR_LICENSE    ... with this license (required with AUTHMIRROR_PROXY_URL)
#   AUTHMIRROR_TEST_ARGS  extra `registry test` options, e.g. "--deep --concurrency 4"
#   AUTHMIRROR_REPORT     JSON report path prefix (default authmirror-images): PREFIX-direct.json, PREFIX-proxy.json
#   AUTHMIRROR            the authmirror command (default: authmirror on PATH, else .venv/bin/authmirror)
# Exit code: 0 when every image is pullable, else that of `authmirror registry test`
# (1 image problems, 2 credential/config problems, 3 network problems).
set -uo pipefail

if [ $# -eq 0 ]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
AM="${AUTHMIRROR:-$(command -v authmirror || echo "$(dirname "$0")/../.venv/bin/authmirror")}"
REPORT="${AUTHMIRROR_REPORT:-authmirror-images}"
read -r -a EXTRA <<< "${AUTHMIRROR_TEST_ARGS:-}"
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT

section() { printf '\n== %s\n' "$1" | tee -a "$OUT"; }

section "images in the release"
images="$("$AM" images "$@" 2>&1)"
status=$?
printf '%s\n' "$images" | tee -a "$OUT"
if [ $status -ne 0 ]; then
  echo "ci-test-images: could not list the release's images (exit $status)" | tee -a "$OUT" >&2
  exit $status
fi

section "pullable from the vendor's registries (mirror credentials, direct)"
"$AM" registry test "$@" --report "$REPORT-direct.json" "${EXTRA[@]}" 2>&1 | tee -a "$OUT"
direct=${PIPESTATUS[0]}

proxy=0
if [ -n "${AUTHMIRROR_PROXY_URL:-}" ]; then
  section "pullable through the mirror at $AUTHMIRROR_PROXY_URL, as a customer"
  mapfile -t refs < <("$AM" images "$@" --proxy-refs)
  args=()
  for ref in "${refs[@]}"; do args+=(--image "$ref"); done
  if [ ${#args[@]} -eq 0 ]; then
    echo "ci-test-images: no image maps to a mirror path" | tee -a "$OUT" >&2
    proxy=2
  else
    "$AM" registry test --via-proxy "$AUTHMIRROR_PROXY_URL" --license env:AUTHMIRROR_LICENSE \
      "${args[@]}" --report "$REPORT-proxy.json" "${EXTRA[@]}" 2>&1 | tee -a "$OUT"
    proxy=${PIPESTATUS[0]}
  fi
fi

result=$direct
[ "$result" -eq 0 ] && result=$proxy
if [ "$result" -eq 0 ]; then
  section "OK: every image is pullable"
else
  section "FAILED (exit $result): see the diagnoses above; JSON reports: $REPORT-*.json"
fi
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  { echo "### authmirror: release images"; echo '```'; cat "$OUT"; echo '```'; } >> "$GITHUB_STEP_SUMMARY"
fi
exit "$result"
