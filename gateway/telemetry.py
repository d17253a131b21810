"""Per-request telemetry, as a pure ASGI middleware (it never buffers bodies).

For each HTTP request: a request id (the trusted proxy's `X-Request-Id` when it
is well formed, else a fresh one) set for the logs and audit events of the
request and returned in the `X-Request-Id` header; at the end, one access log
line and one latency observation labelled by method, *route template* and
status.  The template (`/api/v1/transfers/{transfer_id}`), never the path or the
query: a path may carry ids a caller typed, and the template keeps the metrics'
label set small.
"""

from __future__ import annotations

import logging
import time

from gateway.logs import REQUEST_ID, new_request_id
from gateway.metrics import HTTP_LATENCY
from gateway.security_headers import from_trusted_proxy

log = logging.getLogger("phigate.access")

UNMATCHED = "unmatched"


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope) -> str:
    """The matched route's template, rebuilt from the path and its parameters (router-independent).

    Never a value a caller chose: a parameter that cannot be placed (so its value would stay
    in the path) gives the route's own declared path instead. Metrics labels stay bounded.
    """
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    path = scope.get("path", "")
    for name, value in scope.get("path_params", {}).items():
        value = str(value)
        if "/" in value and path.endswith("/" + value):  # a {name:path} parameter: the rest of the path
            path = path[: -len(value)] + f"{{{name}}}"
            continue
        segments = path.split("/")
        for i in range(len(segments) - 1, 0, -1):
            if segments[i] == value:
                segments[i] = f"{{{name}}}"
                path = "/".join(segments)
                break
        else:
            return getattr(route, "path", None) or UNMATCHED
    return path


class Telemetry:
    def __init__(self, app, *, trusted_proxies=()):
        self.app = app
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        offered = None
        if from_trusted_proxy(scope, self.trusted_proxies):
            offered = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        request_id = new_request_id(offered)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500  # what the client got if the app failed before answering

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            HTTP_LATENCY.labels(method, route, str(status)).observe(seconds)
            log.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={"method": method, "route": route, "status": status, "duration_ms": round(seconds * 1000, 1)},
            )
            REQUEST_ID.reset(token)
