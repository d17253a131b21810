"""Fixtures for registry tests: the transfer party and sessions, and the CLI in a subprocess."""

from tests.retention.conftest import phigate  # noqa: F401
from tests.transfers.conftest import Party, party, session_for  # noqa: F401
