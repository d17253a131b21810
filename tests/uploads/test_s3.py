"""tus on S3 (moto over HTTP and moto in-process, versioned bucket): the upload is one S3 multipart upload
whose parts are the PATCHes, open across requests and replicas (its UploadId and part ETags in the database);
a tail shorter than S3's 5 MiB minimum is staged as a sealed object until the next PATCH; completion is
CompleteMultipartUpload (no copy); cancel, expiry and fsck abort the multipart upload."""

from __future__ import annotations

import hashlib
import warnings
from contextlib import ExitStack

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from sqlalchemy import select

from gateway.uploads import service
from gateway.uploads.models import AssemblyPart, Upload, UploadPart
from tests.retention.conftest import aws_env, make_bucket, s3_endpoint, s3_url  # noqa: F401
from tests.support.s3server import TEST_REGION
from tests.transfers.conftest import events, live_sealed
from tests.uploads.conftest import MiB, Tus, synthetic_pdf
from tests.uploads.test_flaky_link import bearer_for


class Replica:
    """One gateway (its own Components: store client, key provider, pools) on the shared database and bucket."""

    def __init__(self, settings, party):
        from gateway.app import create_app
        from gateway.components import Components

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.components = Components(settings)
        self.client = TestClient(create_app(settings, self.components))
        self.client.headers.update(bearer_for(self.components, party.staff))
        self.tus = Tus.__new__(Tus)
        self.tus.client = self.client


@pytest.fixture(params=["moto_server", "moto_in_process"])
def s3(request, components, aws_env, party):
    """(replica one, replica two, raw S3 client, bucket)."""
    with ExitStack() as stack:
        if request.param == "moto_server":
            endpoint = request.getfixturevalue("s3_endpoint")
            bucket = make_bucket(endpoint)
            raw, url = endpoint.client(), s3_url(endpoint, bucket)
        else:
            stack.enter_context(mock_aws())
            raw = boto3.client("s3", region_name=TEST_REGION)
            bucket = "phg-tus-in-process"
            raw.create_bucket(Bucket=bucket)
            raw.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            url = f"s3://{bucket}?region={TEST_REGION}"
        settings = components.settings.model_copy(update={"storage_url": url})
        one, two = Replica(settings, party), Replica(settings, party)
        for r in (one, two):
            stack.enter_context(r.client)
            stack.callback(r.components.close)
        yield one, two, raw, bucket


def every_version(raw, bucket: str) -> list[str]:
    resp = raw.list_object_versions(Bucket=bucket)
    return sorted(v["Key"] for v in resp.get("Versions", []) + resp.get("DeleteMarkers", []))


def multipart_uploads(raw, bucket: str) -> list[tuple[str, str]]:
    return [(u["Key"], u["UploadId"]) for u in raw.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def rows(db, model, upload_id: str, column: str = "upload_id") -> list:
    """Rows read and detached at once: touching them later starts no transaction (on SQLite, the write lock)."""
    db.expire_all()
    found = list(db.scalars(select(model).where(getattr(model, column) == upload_id)))
    db.expunge_all()
    db.commit()
    return found


def test_multipart_upload_stays_open_across_requests_and_replicas(s3, party, db):
    one, two, raw, bucket = s3
    data = synthetic_pdf(13 * MiB + 333, b"s3-replicas")
    url = one.tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    upload_id = url.rsplit("/", 1)[1]
    (up,) = rows(db, Upload, upload_id, "id")
    (key,) = [r.object_key for r in live_sealed(db)]
    # One multipart upload from the start; its UploadId is in the database.
    assert multipart_uploads(raw, bucket) == [(key, up.assembly)]

    # Six MiB on replica one: part 1 (header and six segments), kept with its ETag.
    assert one.tus.patch(url, 0, data[: 6 * MiB]).headers["Upload-Offset"] == str(6 * MiB)
    (p1,) = rows(db, AssemblyPart, upload_id)
    listed = raw.list_parts(Bucket=bucket, Key=key, UploadId=up.assembly)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in listed] == [(1, p1.etag)]

    # One MiB on replica two (which never saw this upload's hash): shorter than S3 allows a part, so staged.
    service._HASHES._states.clear()
    assert two.tus.patch(url, 6 * MiB, data[6 * MiB : 7 * MiB]).headers["Upload-Offset"] == str(7 * MiB)
    (staged,) = rows(db, UploadPart, upload_id)
    assert (staged.start, staged.end) == (6 * MiB, 7 * MiB)
    # Half a segment more on replica one: the staged tail grows (a new staged object; the old one destroyed).
    r = one.tus.patch(url, 7 * MiB, data[7 * MiB : 8 * MiB + MiB // 2])
    assert r.headers["Upload-Offset"] == str(8 * MiB)
    (grown,) = rows(db, UploadPart, upload_id)
    assert (grown.start, grown.end) == (6 * MiB, 8 * MiB) and grown.sealed_id != staged.sealed_id
    assert multipart_uploads(raw, bucket) == [(key, up.assembly)]
    assert len(set(every_version(raw, bucket))) == 1  # the staged tail; the multipart upload is not an object yet

    # The rest on replica two: part 2 = the staged tail + the rest; CompleteMultipartUpload, no copy.
    service._HASHES._states.clear()
    r = two.tus.patch(url, 8 * MiB, data[8 * MiB :])
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data))
    assert multipart_uploads(raw, bucket) == []
    assert raw.head_object(Bucket=bucket, Key=key, PartNumber=1)["PartsCount"] == 2
    assert rows(db, AssemblyPart, upload_id) == [] and rows(db, UploadPart, upload_id) == []
    assert set(every_version(raw, bucket)) == {key}  # every staged tail gone, every version of it
    r = one.client.post("/api/v1/uploads/transfers", json={"upload_ids": [upload_id]})
    assert r.status_code == 201, r.text
    (f,) = one.client.get(f"/api/v1/transfers/{r.json()['id']}").json()["files"]
    assert (f["size"], f["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    (done,) = events(db, "upload.completed")
    assert done.details["parts"] == 2


def test_small_patches_resume_in_pieces(s3, party, db):
    """The existing shape: a segment and a half, then the rest: offsets on segment boundaries, exact."""
    one, two, raw, bucket = s3
    data = synthetic_pdf(3 * MiB + 99, b"s3")
    url = one.tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    assert one.tus.patch(url, 0, data[: MiB + 5]).headers["Upload-Offset"] == str(MiB)
    assert two.tus.patch(url, MiB, data[MiB:]).headers["Upload-Offset"] == str(len(data))
    r = one.client.post("/api/v1/uploads/transfers", json={"upload_ids": [url.rsplit("/", 1)[1]]})
    assert r.status_code == 201, r.text
    (f,) = one.client.get(f"/api/v1/transfers/{r.json()['id']}").json()["files"]
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(set(every_version(raw, bucket))) == 1 and multipart_uploads(raw, bucket) == []


def test_cancel_on_another_replica_aborts_the_multipart_upload(s3, party, db):
    one, two, raw, bucket = s3
    data = synthetic_pdf(8 * MiB, b"s3-cancel")
    url = one.tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    assert one.tus.patch(url, 0, data[: 6 * MiB + 10]).headers["Upload-Offset"] == str(6 * MiB)
    assert one.tus.patch(url, 6 * MiB, data[6 * MiB : 7 * MiB]).status_code == 204  # a staged tail too
    assert len(multipart_uploads(raw, bucket)) == 1 and len(set(every_version(raw, bucket))) == 1
    assert two.client.delete(url, headers={"Tus-Resumable": "1.0.0"}).status_code == 204
    assert multipart_uploads(raw, bucket) == [] and every_version(raw, bucket) == []
    assert live_sealed(db) == []
    (cancelled,) = events(db, "upload.cancelled")
    assert cancelled.details["multipart_uploads_aborted"] == 1 and cancelled.details["objects_removed"] == 2


def test_expiry_and_fsck_abort_the_multipart_upload(s3, party, db, fake_clock):
    from gateway.audit.service import Actor
    from gateway.sealed.fsck import fsck

    one, two, raw, bucket = s3
    data = synthetic_pdf(8 * MiB, b"s3-expiry")
    for _ in range(2):
        url = one.tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
        assert one.tus.patch(url, 0, data[: 6 * MiB]).status_code == 204
    assert len(multipart_uploads(raw, bucket)) == 2
    fake_clock.advance(hours=25)
    report = fsck(two.components, Actor.system(), repair=True)  # the first upload's object: fsck
    assert len(report.removed) == 2
    assert multipart_uploads(raw, bucket) == []
    assert service.expire(two.components) == 2
    assert live_sealed(db) == [] and len(events(db, "upload.expired")) == 2
