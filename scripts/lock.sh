#!/usr/bin/env bash
# Regenerate the lock files that `make run` and `make test` install from:
#   requirements/run.txt   [project].dependencies + the build backend
#   requirements/test.txt  the same + the test, contract and bench extras (ruff and mypy included)
# Exact versions with every file's hash (pip install --require-hashes); no index URL or
# find-links line is written, so the locks name no registry and no machine path.
# Run after changing a dependency in pyproject.toml; commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TOOLS=.venv-lock
[ -x "$TOOLS/bin/pip-compile" ] || { "$PYTHON" -m venv "$TOOLS" && "$TOOLS/bin/pip" install --quiet pip-tools==7.6.2; }
compile() {
  "$TOOLS/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
    --no-emit-find-links --no-emit-trusted-host --upgrade "$@" pyproject.toml requirements/build.in
}
compile --output-file requirements/run.txt
compile --extra test --extra contract --extra bench --output-file requirements/test.txt
if grep -nE '^(-i|--index-url|--extra-index-url|-f|--find-links|--trusted-host)|://' requirements/run.txt requirements/test.txt; then
  echo "a lock file names an index or URL: refusing it" >&2
  exit 1
fi
