"""Vendored browser code is exactly what scripts/vendor_tus_js.py recorded, and the gateway serves it itself."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "gateway" / "static" / "vendor"


def test_tus_js_client_matches_its_record(client):
    record = json.loads((VENDOR / "tus-js-client.json").read_text())
    bundle = (VENDOR / record["file"]).read_bytes()
    assert record["package"] == "tus-js-client" and record["license"] == "MIT"
    assert hashlib.sha256(bundle).hexdigest() == record["sha256"]
    assert "MIT License" in (VENDOR / record["license_file"]).read_text()
    served = client.get(f"/static/vendor/{record['file']}")
    assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == record["sha256"]
