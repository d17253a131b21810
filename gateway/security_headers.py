"""Security headers on every response, as a pure ASGI middleware (it never buffers bodies)."""

from __future__ import annotations

import ipaddress

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
# Every attachment (stored files, exports, certificates, BAA copies) is also a sandbox: a stored file
# that a browser renders anyway (HTML accepted as .txt, a PDF/HTML polyglot) runs no script in the
# gateway's origin, with no access to its cookies or pages.
ATTACHMENT_CSP = CSP + "; sandbox"
STATIC_PREFIX = "/static/"


def from_trusted_proxy(scope, trusted_proxies) -> bool:
    """True when the ASGI peer is one of the configured proxies, whose forwarded headers may be believed."""
    client = scope.get("client")
    if not client or not trusted_proxies:
        return False
    try:
        peer = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    return any(peer in net for net in trusted_proxies)


class SecurityHeaders:
    def __init__(self, app, *, trusted_proxies=()):
        self.app = app
        self.trusted_proxies = trusted_proxies

    def _over_tls(self, scope) -> bool:
        if scope.get("scheme") == "https":
            return True
        # Behind a TLS-terminating proxy, believe X-Forwarded-Proto only from that proxy.
        if not from_trusted_proxy(scope, self.trusted_proxies):
            return False
        proto = dict(scope.get("headers", [])).get(b"x-forwarded-proto", b"")
        return proto.split(b",")[0].strip() == b"https"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope["path"].startswith(STATIC_PREFIX)
        tls = self._over_tls(scope)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control" or static]
                attachment = any(
                    k.lower() == b"content-disposition" and v.lower().startswith(b"attachment") for k, v in headers
                )
                headers += [
                    (b"content-security-policy", (ATTACHMENT_CSP if attachment else CSP).encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                ]
                if not static:
                    # Pages and API answers may carry PHI metadata: never cache them anywhere.
                    headers.append((b"cache-control", b"no-store"))
                    headers.append((b"pragma", b"no-cache"))
                if tls:
                    headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_with_headers)
