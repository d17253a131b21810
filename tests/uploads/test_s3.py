"""tus on an S3 store (moto server over HTTP, versioned bucket): resumed in pieces, exact, and every part
(every version of it) gone once the upload is assembled; a cancelled upload leaves nothing in the bucket."""

from __future__ import annotations

import hashlib
import warnings

import pytest
from fastapi.testclient import TestClient

from tests.conftest import api_login
from tests.retention.conftest import aws_env, make_bucket, s3_endpoint, s3_url  # noqa: F401
from tests.uploads.conftest import MiB, Tus, synthetic_pdf


@pytest.fixture
def s3_app(components, s3_endpoint, aws_env):
    from gateway.app import create_app
    from gateway.components import Components

    bucket = make_bucket(s3_endpoint)
    settings = components.settings.model_copy(update={"storage_url": s3_url(s3_endpoint, bucket)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = Components(settings)
    yield create_app(settings, c), bucket
    c.close()


def every_version(raw, bucket: str) -> list[str]:
    resp = raw.list_object_versions(Bucket=bucket)
    return sorted(v["Key"] for v in resp.get("Versions", []) + resp.get("DeleteMarkers", []))


def test_resumed_upload_on_s3(s3_app, s3_endpoint, party, fake_clock):
    app, bucket = s3_app
    raw = s3_endpoint.client()
    with TestClient(app) as client:
        client.headers["X-CSRF-Token"] = api_login(client, party.staff, fake_clock)
        tus = Tus.__new__(Tus)
        tus.client = client
        data = synthetic_pdf(3 * MiB + 99, b"s3")
        url = tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
        assert tus.patch(url, 0, data[: MiB + 5]).headers["Upload-Offset"] == str(MiB)
        assert tus.patch(url, MiB, data[MiB:]).headers["Upload-Offset"] == str(len(data))
        r = client.post("/api/v1/uploads/transfers", json={"upload_ids": [url.rsplit("/", 1)[1]]})
        assert r.status_code == 201, r.text
        (f,) = client.get(f"/api/v1/transfers/{r.json()['id']}").json()["files"]
        assert f["sha256"] == hashlib.sha256(data).hexdigest()
        # Only the assembled object is left: both parts gone, every version of them.
        assert len(set(every_version(raw, bucket))) == 1

        cancelled = tus.create(2 * MiB, partner_id=party.vendor.id).headers["Location"]
        assert tus.patch(cancelled, 0, data[:MiB]).status_code == 204
        assert len(set(every_version(raw, bucket))) == 2
        assert client.delete(cancelled, headers={"Tus-Resumable": "1.0.0"}).status_code == 204
        assert len(set(every_version(raw, bucket))) == 1
