#!/usr/bin/env bash
# Static checks, configured in pyproject.toml: ruff lint, ruff format, mypy; and the lock files
# name no index. Fails on any finding.
#   scripts/check.sh            (or: make lint)
# Uses the tools of .venv (installed by `make .venv/.installed-test`); BIN=... picks another venv.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
status=0
"$BIN/ruff" check . || status=1
"$BIN/ruff" format --check . || status=1
"$BIN/mypy" || status=1
# The lock files must name no package index or other URL (scripts/lock.sh writes none).
if grep -nE '^(-i|--index-url|--extra-index-url|-f|--find-links|--trusted-host)|://' requirements/*.txt; then
  echo "requirements/: a lock file names an index or URL; regenerate it with scripts/lock.sh" >&2
  status=1
fi
exit "$status"
