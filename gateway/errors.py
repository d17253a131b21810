"""One exception family for the gateway.

Services raise these; one handler in `app.py` turns them into
`{"error": {"code", "message"}}` for the API or an HTML page for the UI.
Messages are written for the user and never carry PHI, stack traces or
whether an account exists.
"""

from __future__ import annotations


class ClientDisconnected(Exception):
    """The client went away before its request body ended.

    Not a refusal: nobody is left to answer.  The HTTP adapter raises it from the body
    stream (gateway.web.request_body), so services recognise a hang-up without knowing
    the web framework.
    """


class GatewayError(Exception):
    status = 400
    code = "bad_request"
    message = "The request could not be processed."
    # True when the raiser already recorded (and committed) the audit event for this
    # refusal; otherwise the error handler records `request.refused` for it.
    audited = False

    def __init__(self, message: str | None = None, *, code: str | None = None, headers: dict | None = None):
        self.message = message or type(self).message
        if code:
            self.code = code
        self.headers = headers or {}
        super().__init__(self.message)


class MalformedBody(GatewayError):
    """A body that cannot be parsed at all (400), unlike one that parses but holds bad values (422)."""

    status = 400
    code = "malformed_body"
    message = "The request body cannot be parsed."


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"
    message = "This operation does not read a body of this Content-Type."


class InvalidInput(GatewayError):
    status = 422
    code = "invalid_input"
    message = "Some fields are not valid."


class NotAuthenticated(GatewayError):
    status = 401
    code = "not_authenticated"
    message = "Sign in to continue."


class LoginFailed(GatewayError):
    status = 401
    audited = True  # every raise follows auth.service._fail, which records the reason
    code = "login_failed"
    message = "The username, password or code is not correct. After repeated failures an account is locked for a while."


class MfaRequired(GatewayError):
    status = 401
    code = "mfa_required"
    message = "Finish signing in with your authenticator code."


class PasswordChangeRequired(GatewayError):
    status = 403
    code = "password_change_required"
    message = "Choose a new password before continuing."


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"
    message = "You are not allowed to do this."


class CsrfFailed(GatewayError):
    status = 403
    code = "csrf_failed"
    message = "The form has expired or did not come from this site. Reload the page and try again."


class NotFound(GatewayError):
    status = 404
    code = "not_found"
    message = "Not found."


class Conflict(GatewayError):
    status = 409
    code = "conflict"
    message = "This conflicts with the current state."


class RateLimited(GatewayError):
    status = 429
    audited = True  # counted in the address's window (gateway/auth/throttle.py), not recorded one by one
    code = "rate_limited"
    message = "Too many attempts. Try again later."

    def __init__(self, resets_in_seconds: int):
        super().__init__(
            f"Too many attempts. Try again in {max(1, resets_in_seconds // 60 or 1)} minute(s).",
            headers={"Retry-After": str(max(1, resets_in_seconds))},
        )
        self.resets_in_seconds = resets_in_seconds
