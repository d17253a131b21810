"""PHIGATE_SMTP_*: the URL's forms, its password hidden everywhere it could be shown, clear text refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("PHIGATE_"):
            monkeypatch.delenv(name)


def test_the_password_from_a_secret_file_and_in_the_url_stays_hidden(tmp_path, monkeypatch):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "phigate_smtp_password").write_text("smtp-secret-from-a-file")
    monkeypatch.setenv("PHIGATE_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("PHIGATE_SMTP_URL", "smtp://mailer:url-pa55word@mail.example.invalid:587")
    settings = Settings(_env_file=None)
    assert settings.smtp_password.get_secret_value() == "smtp-secret-from-a-file"
    shown = settings.redacted()
    assert shown["smtp_url"] == "smtp://mailer:**********@mail.example.invalid:587"
    assert "smtp-secret-from-a-file" not in str(shown) and "url-pa55word" not in str(shown)
    assert "smtp-secret-from-a-file" not in repr(settings)
    assert settings.smtp_tls


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.example.invalid",
        "smtp://",
        "smtp://mailer:pw-in-a-bad-url@mail.example.invalid/path",
        "smtp://mail.example.invalid?starttls=maybe",
        "smtp://mail.example.invalid?tls=off",
    ],
)
def test_a_malformed_url_is_refused_without_echoing_it(url):
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, smtp_url=url)
    assert "PHIGATE_SMTP_URL" in str(caught.value)
    assert "pw-in-a-bad-url" not in str(caught.value)


def test_clear_text_beyond_loopback_is_refused_in_production(tmp_path):
    base = {
        "_env_file": None,
        "env": "production",
        "public_url": "https://gateway.example",
        "allow_local_keyring": True,
        "data_dir": tmp_path,
    }
    far = Settings(**base, smtp_url="smtp://relay.example.invalid:25?starttls=off")
    assert not far.smtp_tls
    assert any("starttls=off" in p for p in far.production_problems())
    near = Settings(**base, smtp_url="smtp://127.0.0.1:25?starttls=off")
    assert not any("SMTP" in p for p in near.production_problems())
    assert not any("SMTP" in p for p in Settings(**base, smtp_url="smtps://mail.example.invalid").production_problems())


def test_unset_it_warns_that_mail_waits_and_the_sender_follows_the_public_url():
    settings = Settings(_env_file=None, public_url="https://gateway.example")
    assert any("PHIGATE_SMTP_URL is not set" in w for w in settings.warnings())
    assert settings.effective_smtp_from == "phigate@gateway.example"
    assert Settings(_env_file=None, smtp_from="noreply@practice.example").effective_smtp_from == (
        "noreply@practice.example"
    )
