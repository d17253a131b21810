#!/usr/bin/env bash
# Static checks, configured in pyproject.toml: ruff lint, ruff format, mypy. Fails on any finding.
#   scripts/check.sh            (or: make lint)
# Uses the tools of .venv (installed by `make .venv/.installed-test`); BIN=... picks another venv.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
status=0
"$BIN/ruff" check . || status=1
"$BIN/ruff" format --check . || status=1
"$BIN/mypy" || status=1
exit "$status"
