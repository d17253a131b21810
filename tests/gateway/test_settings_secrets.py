"""PHIGATE_SECRETS_DIR: secrets read from files (as Kubernetes and Docker mount them), never echoed back."""

from gateway.config import Settings


def test_secrets_come_from_files_and_stay_hidden(tmp_path, monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("PHIGATE_"):
            monkeypatch.delenv(name)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "phigate_database_url").write_text("postgresql+psycopg://phigate:s3cr3t-pw@db.example.invalid/phigate")
    (secrets / "phigate_metrics_token").write_text("metrics-token-from-a-file")
    monkeypatch.setenv("PHIGATE_SECRETS_DIR", str(secrets))
    settings = Settings(_env_file=None)
    assert settings.database_url.endswith("@db.example.invalid/phigate")
    assert settings.metrics_token.get_secret_value() == "metrics-token-from-a-file"
    shown = settings.redacted()
    assert "s3cr3t-pw" not in str(shown) and "metrics-token-from-a-file" not in str(shown)
    # The environment, when it names a setting too, wins over the file.
    monkeypatch.setenv("PHIGATE_METRICS_TOKEN", "from-the-environment")
    assert Settings(_env_file=None).metrics_token.get_secret_value() == "from-the-environment"


def test_without_a_secrets_dir_nothing_is_read_from_files(tmp_path, monkeypatch):
    monkeypatch.delenv("PHIGATE_SECRETS_DIR", raising=False)
    monkeypatch.delenv("PHIGATE_METRICS_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "phigate_metrics_token").write_text("stray file")
    assert Settings(_env_file=None).metrics_token.get_secret_value() == ""
