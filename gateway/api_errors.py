"""The error answers of every API operation, declared in the schema from the route itself.

Every error leaves through one handler (gateway/app.py) as `{"error": {"code", "message"}}`,
so one model describes them all; which statuses an operation can answer follows mostly from
what the route is made of, and is computed here once for every route instead of being written
on each:

* a caller check (`deps.partial_principal` under every `require(...)`, or `require_in_handler(...)`): 401 (no, a bad or an
  unfinished sign-in), 403 (role, CSRF, origin, password change) and 429 (an address over its
  limit of refusals, gateway/auth/throttle.py);
* any parameter or body: 422 `invalid_input` (also for a value the database cannot hold), in
  place of FastAPI's `{"detail": [...]}`, which this API never sends; a JSON body: 400
  `malformed_json`;
* a path parameter: 404 (also for another organisation's objects);
* a method that changes state: 409 (a domain conflict, or a race lost on a database
  constraint, answered by the handler of IntegrityError).

What only the domain knows (size limits, media types, ranges, stored files that fail) is the
table `DOMAIN` below; tests/gateway/test_api_errors.py checks that it names only real
operations and the schemathesis sweep (tests/gateway/test_schemathesis.py) that no operation
answers a status it does not declare.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from pydantic import BaseModel, Field

from gateway import deps, errors
from gateway.api_docs import schema_routes
from gateway.filetypes import FileTooLarge
from gateway.sealed.errors import IntegrityFailure, ObjectDestroyed, StorageUnavailable
from gateway.transfers.download import RangeNotSatisfiable
from gateway.uploads.service import ChecksumMismatch

SAFE_METHODS = deps.SAFE_METHODS


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable reason, e.g. `not_authenticated`, `file_too_large`.")
    message: str = Field(description="For people; never contains PHI or whether an account exists.")


class ErrorBody(BaseModel):
    """The body of every error answer of the API."""

    error: ErrorDetail


_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds until the caller may try again.", "schema": {"type": "integer"}}
}

# What each status means in this API, with its usual codes (docs/api.md has the full table).
MEANING: dict[int, str] = {
    400: "The body cannot be parsed: `malformed_json`, `malformed_multipart`, `client_disconnected`.",
    401: "Not signed in, or not far enough: `not_authenticated`, `invalid_token`, `mfa_required`, `login_failed`.",
    403: "Not allowed: `forbidden`, `csrf_failed`, `bad_origin`, `password_change_required`, `wrong_stage`, "
    "`four_eyes`, `baa_not_active`, `download_<reason>`, `passkey_required`.",
    404: "No such object, or one of another organisation (they answer alike): `not_found`, `..._not_found`.",
    409: "Conflicts with the current state: `conflict` (a race lost to a concurrent request: retry), "
    "`not_awaiting_approval`, `username_taken`, `policy_exists`, `upload_offset_mismatch`, ...",
    410: "Gone for good: `object_destroyed`, `upload_expired`.",
    412: "`tus_version_unsupported`: send `Tus-Resumable: 1.0.0`.",
    413: "Too large: `file_too_large`, `upload_past_length`.",
    415: "`unsupported_media_type`: the body's `Content-Type` is not one this operation reads.",
    416: "`range_not_satisfiable`: the `Range` is not within the file.",
    422: "Some input is not valid: `invalid_input` (the fields are named in the message) or a field-specific code.",
    429: "Too many attempts: `rate_limited`, `upload_limit`, `upload_bytes_limit`; see `Retry-After`.",
    460: "`checksum_mismatch`: the body does not match `Upload-Checksum`; nothing of it was kept.",
    502: "`integrity_failure`: the stored file failed its integrity check and was not sent.",
    503: "A component is unavailable; try again later: `storage_unavailable`, `key_provider_unavailable`, "
    "`destruction_incomplete`.",
}

# One typical answer of each status, as the schema's example.
EXAMPLE: dict[int, tuple[str, str]] = {
    400: ("malformed_json", "The request body is not valid JSON."),
    412: ("tus_version_unsupported", "Send Tus-Resumable: 1.0.0."),
    413: (FileTooLarge.code, "A file may be at most 5368709120 bytes."),
    429: (errors.RateLimited.code, "Too many attempts. Try again in 15 minute(s)."),
    **{
        error.status: (error.code, error.message)
        for error in (
            errors.NotAuthenticated,
            errors.Forbidden,
            errors.NotFound,
            errors.Conflict,
            ObjectDestroyed,
            errors.UnsupportedMediaType,
            RangeNotSatisfiable,
            errors.InvalidInput,
            ChecksumMismatch,
            IntegrityFailure,
            StorageUnavailable,
        )
    },
}

_STORED = (502, 503)  # reads a stored (sealed) object
_SEALS = (503,)  # stores or destroys a sealed object

# Statuses only the domain knows, by operation ("METHOD path" as in the schema).
DOMAIN: dict[str, tuple[int, ...]] = {
    "POST /api/v1/auth/login": (401, 403, 429),
    "POST /api/v1/auth/passkey-policies": (404,),  # the organisation named
    "POST /api/v1/users": (404,),  # the organisation named
    "POST /api/v1/baas": (404,),  # the organisations named
    "PUT /api/v1/retention/policies": (404,),  # the organisations named
    "POST /api/v1/auth/passkeys/registration-options": (422,),  # passkey_needs_session
    "POST /api/v1/transfers": (404, 413, 415, *_SEALS),
    "GET /api/v1/transfers/{transfer_id}/files/{file_id}/content": (410, 416, *_STORED),
    "OPTIONS /api/v1/uploads": (),
    "POST /api/v1/uploads": (412, 413, 422, *_SEALS),
    "HEAD /api/v1/uploads/{upload_id}": (410,),
    "PATCH /api/v1/uploads/{upload_id}": (410, 412, 413, 415, 422, 460, *_STORED),
    "DELETE /api/v1/uploads/{upload_id}": (412, *_SEALS),
    "POST /api/v1/uploads/transfers": (404, 410, *_STORED),
    "PUT /api/v1/baas/{baa_id}/signed-copy": (413, 415, 422, *_SEALS),
    "GET /api/v1/baas/{baa_id}/signed-copy": (410, *_STORED),
    "POST /api/v1/offboarding": (404, *_SEALS),  # the vendor named
    "GET /api/v1/audit/checkpoints/latest": (404,),
    "POST /api/v1/audit/checkpoints": (404,),
    "GET /api/v1/audit/proofs/inclusion": (404, 409),  # the event or checkpoint named
    "GET /api/v1/audit/proofs/consistency": (404, 409),
    "GET /readyz": (503,),
}


def operations(app: FastAPI) -> Iterator[tuple[str, Any]]:
    """(method, route) of every operation in the schema, through the included routers."""
    for route in schema_routes(app):
        for method in sorted(route.methods or ()):
            yield method, route


def operation_key(method: str, route: Any) -> str:
    return f"{method} {route.path_format}"


def _tree(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _tree(sub)


def statuses(method: str, route: Any) -> set[int]:
    """Every error status `method` on `route` can answer."""
    found = set(DOMAIN.get(operation_key(method, route), ()))
    tree = list(_tree(route.dependant))
    if any(deps.checks_the_caller(d.call) for d in tree):
        found |= {401, 403, 429}
    if any(d.path_params for d in tree):
        found.add(404)
    # A value out of its declared range, or one the database cannot hold (app.py: DataError).
    if any(d.path_params or d.query_params or d.header_params or d.cookie_params for d in tree):
        found.add(422)
    if route.body_field is not None:
        found |= {400, 422}
    if method not in SAFE_METHODS:
        # Reads the body (a client that hangs up), and a write may lose a race on a constraint.
        found |= {400, 409}
    return found


def responses(method: str, route: Any) -> dict[str, dict[str, Any]]:
    """The OpenAPI `responses` entries of the error statuses of one operation."""
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    out: dict[str, dict[str, Any]] = {}
    for status in sorted(statuses(method, route)):
        code, message = EXAMPLE[status]
        media = {"schema": ref, "example": {"error": {"code": code, "message": message}}}
        entry: dict[str, Any] = {"description": MEANING[status], "content": {"application/json": media}}
        if status == 429:
            entry["headers"] = _RETRY_AFTER
        out[str(status)] = entry
    return out


def declare(schema: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    """Put the real error answers into a generated schema: FastAPI's 422 out, ours in, per operation."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorDetail, ErrorBody):
        components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.get(ErrorBody.__name__, {}).pop("$defs", None)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for method, route in operations(app):
        operation = schema.get("paths", {}).get(route.path_format, {}).get(method.lower())
        if operation is None:
            continue
        declared = operation.setdefault("responses", {})
        declared.pop("422", None)
        declared.update(responses(method, route))
    return schema
