#!/usr/bin/env bash
# The fast lane against the oldest versions pyproject.toml claims to support.
#   scripts/test_minimum.sh        (or: make test-minimum; .ci/run runs it)
# Builds .venv-minimum with every direct dependency pinned to its declared minimum
# (scripts/minimum_constraints.py), then runs the SQLite lane of a cross-section of the
# suite: crypto and storage contracts, sign-in, uploads and the approval gates, downloads,
# the audit log, retention. A failure here means a minimum in pyproject.toml is wrong.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-minimum

"$PYTHON" -m venv --clear "$VENV"
"$VENV/bin/python" scripts/minimum_constraints.py test > "$VENV/constraints.txt"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$VENV/constraints.txt" -e '.[test]'
"$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
  | grep -iE '^(fastapi|starlette|sqlalchemy|pydantic|pydantic-settings|python-multipart|cryptography|webauthn|boto3) '

exec "$VENV/bin/python" scripts/run_tests.py -q -p no:cacheprovider -m "not browser and not slow" -k "not postgresql" \
  tests/crypto tests/storage/test_contract.py \
  tests/gateway/test_auth_login.py tests/gateway/test_auth_totp.py tests/gateway/test_passkeys.py \
  tests/gateway/test_settings_secrets.py tests/gateway/test_security_headers.py \
  tests/transfers/test_upload.py tests/transfers/test_gates.py \
  tests/audit/test_log.py tests/audit/test_actions.py tests/audit/test_api.py \
  tests/retention/test_retention_run.py
