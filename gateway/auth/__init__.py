"""Authentication: login, TOTP, sessions, CSRF, API tokens, brute-force throttles."""
