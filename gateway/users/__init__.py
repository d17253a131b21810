"""User accounts, roles, passwords and TOTP enrolment."""
