"""The session cookie: HttpOnly, SameSite=Strict, Secure with the __Host- prefix outside plain-HTTP demos."""

from fastapi import Response

from gateway.config import Settings

LOGIN_CSRF_COOKIE = "phigate_login_csrf"


def set_session_cookie(response: Response, settings: Settings, raw: str) -> None:
    response.set_cookie(
        settings.session_cookie_name,
        raw,
        max_age=settings.session_absolute_hours * 3600,
        path="/",
        secure=settings.effective_cookie_secure,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        settings.session_cookie_name,
        path="/",
        secure=settings.effective_cookie_secure,
        httponly=True,
        samesite="strict",
    )
