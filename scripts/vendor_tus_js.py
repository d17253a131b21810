"""Vendor tus-js-client into gateway/static/vendor/ (served by the gateway itself: no CDN under the CSP).

    python scripts/vendor_tus_js.py

Installs the pinned version with `npm install --ignore-scripts` into a temporary
directory, copies its browser bundle and its licence, and records the version and
the bundle's SHA-256 in gateway/static/vendor/tus-js-client.json; a test checks the
served file against that record, so a changed file is noticed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

VERSION = "4.3.1"
VENDOR = Path(__file__).resolve().parents[1] / "gateway" / "static" / "vendor"
BUNDLE = "tus.min.js"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="vendor-tus-") as tmp:
        subprocess.run(
            [
                "npm",
                "install",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--prefix",
                tmp,
                f"tus-js-client@{VERSION}",
            ],
            check=True,
        )
        package = Path(tmp) / "node_modules" / "tus-js-client"
        installed = json.loads((package / "package.json").read_text())
        if installed["version"] != VERSION:
            raise SystemExit(f"npm installed {installed['version']}, not {VERSION}")
        VENDOR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / "dist" / BUNDLE, VENDOR / BUNDLE)
        shutil.copyfile(package / "LICENSE", VENDOR / "tus-js-client.LICENSE")
    digest = hashlib.sha256((VENDOR / BUNDLE).read_bytes()).hexdigest()
    record = {
        "package": "tus-js-client",
        "version": VERSION,
        "file": BUNDLE,
        "sha256": digest,
        "license": installed.get("license", ""),
        "license_file": "tus-js-client.LICENSE",
    }
    (VENDOR / "tus-js-client.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
