#!/usr/bin/env bash
# Static checks of deploy/, offline: yamllint on every YAML file, kubernetes-validate (schemas shipped
# in the package) on every manifest, checkov on the Dockerfile, the compose file and the manifests.
# The tools live in .venv-checks, installed from deploy/checks-requirements.txt (pinned); .ci/run calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-checks
REQS=deploy/checks-requirements.txt

if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQS" "$VENV/.installed"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS" >"$VENV/install.log" 2>&1 \
    || { cat "$VENV/install.log"; exit 1; }
  cp "$REQS" "$VENV/.installed"
fi
BIN="$VENV/bin"

echo "== yamllint"
"$BIN/yamllint" --strict -c deploy/yamllint.yaml deploy

echo "== kubernetes-validate (every document of every manifest, strict)"
"$BIN/kubernetes-validate" --strict --quiet $(ls deploy/kubernetes/*.yaml | grep -v kustomization.yaml)
# kustomization.yaml lists every manifest and nothing else, so `kubectl apply -k` applies what was validated.
"$BIN/python" - <<'PY'
import pathlib, sys, yaml
root = pathlib.Path("deploy/kubernetes")
listed = set(yaml.safe_load((root / "kustomization.yaml").read_text())["resources"])
present = {p.name for p in root.glob("*.yaml")} - {"kustomization.yaml"}
if listed != present:
    sys.exit(f"kustomization.yaml resources {sorted(listed)} != manifests {sorted(present)}")
print(f"kustomization.yaml lists all {len(present)} manifests")
PY

echo "== checkov (no download; skips carry their reason in the file they skip)"
export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
"$BIN/checkov" --quiet --compact --skip-download --framework dockerfile -f deploy/Dockerfile
"$BIN/checkov" --quiet --compact --skip-download --framework kubernetes -d deploy/kubernetes
# checkov has no docker-compose framework: its secrets scan runs on the compose file, and
# tests/deploy/test_deploy_files.py checks the compose file's hardening.
"$BIN/checkov" --quiet --compact --skip-download --framework secrets -f deploy/compose.yaml -f deploy/phigate.env.example
echo "deploy checks passed"
