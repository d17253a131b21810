"""Vendor Swagger UI into gateway/static/vendor/swagger-ui/ (the /api/docs page: no CDN under the CSP).

    python scripts/vendor_swagger_ui.py

Installs the pinned version of swagger-ui-dist with `npm install --ignore-scripts` into a
temporary directory, copies the browser bundle, its stylesheet and the licence and notice, and
records the version and each file's SHA-256 in gateway/static/vendor/swagger-ui.json; a test
checks the served files against that record, so a changed file is noticed. The page's
initialisation is the gateway's own gateway/static/api-docs.js (no inline script).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "swagger-ui-dist"
VERSION = "5.35.0"
VENDOR = Path(__file__).resolve().parents[1] / "gateway" / "static" / "vendor"
TARGET = VENDOR / "swagger-ui"
FILES = ("swagger-ui-bundle.js", "swagger-ui.css")
LICENCE_FILES = ("LICENSE", "NOTICE")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="vendor-swagger-ui-") as tmp:
        subprocess.run(
            ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", tmp, f"{PACKAGE}@{VERSION}"],
            check=True,
        )
        package = Path(tmp) / "node_modules" / PACKAGE
        installed = json.loads((package / "package.json").read_text())
        if installed["version"] != VERSION:
            raise SystemExit(f"npm installed {installed['version']}, not {VERSION}")
        if TARGET.exists():
            shutil.rmtree(TARGET)
        TARGET.mkdir(parents=True)
        for name in FILES + LICENCE_FILES:
            shutil.copyfile(package / name, TARGET / name)
    record = {
        "package": PACKAGE,
        "version": VERSION,
        "files": {name: hashlib.sha256((TARGET / name).read_bytes()).hexdigest() for name in FILES},
        "license": installed.get("license", ""),
        "license_files": list(LICENCE_FILES),
    }
    (VENDOR / "swagger-ui.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
