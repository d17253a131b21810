"""Fixtures for the crypto package tests (synthetic keys and data only)."""

from __future__ import annotations

import warnings

import pytest

from crypto import init_keyring, open_key_provider

SMALL_SEG = 16  # tiny segments keep exhaustive tamper tests fast


@pytest.fixture
def keyring_path(tmp_path):
    return init_keyring(tmp_path / "keyring")


@pytest.fixture
def local_provider(keyring_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_key_provider(f"local://{keyring_path}", onshore_regions=("us-east-1",))


@pytest.fixture
def aws_env(monkeypatch):
    """Fake credentials so boto3 never looks for real ones."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
