"""Effective configuration, read from `PHIGATE_*` environment variables.

Embedded defaults run on one machine with zero set-up (SQLite, a local object
directory, a local onshore keyring under the data directory).  They are unsafe
for production and say so: `warnings()` lists them at start, and
`PHIGATE_ENV=production` refuses them outright through `production_problems()`.
"""

from __future__ import annotations

import ipaddress
import os
import zoneinfo
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SecretsSettingsSource, SettingsConfigDict

# Comma-separated in the environment (PHIGATE_ONSHORE_REGIONS=us-east-1,us-west-2).
Csv = Annotated[tuple[str, ...], NoDecode]

US_REGIONS = ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "us-gov-east-1", "us-gov-west-1")


class Settings(BaseSettings):
    # A refused value is never echoed back: it may be a URL holding a password.
    model_config = SettingsConfigDict(env_prefix="PHIGATE_", extra="ignore", hide_input_in_errors=True)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        # PHIGATE_SECRETS_DIR: one file per secret setting, named like its variable (phigate_database_url),
        # as Kubernetes and Docker mount Secrets; secrets then stay out of the process environment.
        secrets_dir = os.environ.get("PHIGATE_SECRETS_DIR")
        if secrets_dir:
            file_secret_settings = SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir)
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./var")
    database_url: str | None = Field(default=None, description="default: sqlite file in the data dir")
    storage_url: str | None = Field(default=None, description="default: file:// objects dir in the data dir")
    key_provider_url: str | None = Field(default=None, description="default: local:// keyring in the data dir")
    allow_local_keyring: bool = False
    # A key service that hangs must fail a request promptly (503 key_provider_unavailable), not hold it.
    kms_connect_timeout: float = Field(default=5.0, gt=0, le=120, description="seconds to connect to KMS")
    kms_read_timeout: float = Field(default=15.0, gt=0, le=300, description="seconds to wait for each KMS answer")
    kms_max_attempts: int = Field(default=3, ge=1, le=10, description="attempts per KMS call, the first included")
    onshore_regions: Csv = US_REGIONS
    onshore_endpoints: Csv = ()

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes of `phigate serve`")
    worker_threads: int = Field(
        default=40, ge=4, le=1000, description="threads per process for database, key, storage and hashing work"
    )
    switch_interval_ms: float = Field(
        default=1.0,
        ge=0.1,
        le=100,
        description="milliseconds a busy thread keeps the interpreter lock while another asks for it (Python's 5)",
    )
    bulk_streams: int = Field(
        default=4, ge=1, le=1000, description="uploads and downloads moving bytes at once per process; others wait"
    )
    db_pool_size: int = Field(default=10, ge=1, le=500, description="database connections kept per process")
    db_max_overflow: int = Field(default=30, ge=0, le=1000, description="extra connections per process under load")
    db_pool_timeout: float = Field(default=30.0, gt=0, le=600, description="seconds to wait for a free connection")
    sqlite_busy_timeout: float = Field(
        default=30.0, gt=0, le=600, description="seconds a SQLite writer waits for another process's write lock"
    )
    trusted_proxies: Csv = ()
    scheduler_lease_seconds: float = Field(
        default=30.0, ge=1, le=3600, description="lease of the scheduler's leader among replicas"
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="serve /metrics on this port (off when unset)"
    )
    metrics_host: str = Field(default="127.0.0.1", description="address the metrics port listens on")
    metrics_token: SecretStr = Field(default=SecretStr(""), description="bearer token /metrics requires")
    log_format: Literal["json", "text"] = "json"
    cookie_secure: bool | None = None
    instance_id: str = "phigate-local"
    # The address users type: the WebAuthn relying party id and origin come from here, never from a
    # request's Host header (which a proxy or an attacker chooses).
    public_url: str | None = Field(
        default=None, description="https://gateway.example; default in development: http://localhost:<port>"
    )
    passkey_mds_file: Path | None = Field(
        default=None,
        description="FIDO MDS3 payload (JSON) of the authenticator "
        "models accepted; unset: any authenticator, attestation 'none'",
    )
    passkey_challenge_seconds: int = Field(
        default=300, ge=30, le=900, description="how long a passkey challenge may be answered"
    )

    session_idle_minutes: int = Field(default=15, ge=1, le=24 * 60)
    session_absolute_hours: int = Field(default=12, ge=1, le=7 * 24)
    lockout_threshold: int = Field(default=10, ge=3, le=100)
    lockout_minutes: int = Field(default=15, ge=1)
    ip_failure_limit: int = Field(default=50, ge=5)
    ip_window_minutes: int = Field(default=15, ge=1)
    api_token_max_days: int = Field(default=90, ge=1)

    # Audit log (gateway/audit): signed checkpoints, retention, access review, alerts.
    audit_checkpoint_interval_seconds: int = Field(default=300, ge=0, description="0: no in-process scheduler")
    audit_integrate_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="the leader integrates queued audit events this often: on PostgreSQL the bound on their delay",
    )
    audit_log_origin: str | None = Field(
        default=None, description="checkpoint origin; default phigate/<instance_id>/audit"
    )
    audit_retention_years: int = Field(default=6, ge=1, le=100)
    audit_inactivity_days: int = Field(default=90, ge=1)
    audit_alert_sink: str = Field(default="", description="http(s):// webhook URL or file:// JSON-lines path")
    audit_alert_allowed_hours: str = Field(
        default="06-20",
        pattern=r"^([01][0-9]|2[0-4])-([01][0-9]|2[0-4])$",
        description="hours HH-HH (22-06 spans midnight) in which sign-ins raise no alert, in each organisation's "
        "time zone; the default of organisations with no hours of their own",
    )
    timezone: str = Field(
        default="UTC", description="the operator's IANA time zone: the default of organisations with none of their own"
    )
    audit_alert_rules: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="JSON overrides of alert thresholds"
    )
    outbox_retry_seconds: int = Field(
        default=30, ge=0, description="how often serve retries messages (alerts, e-mail) not delivered yet (0: off)"
    )

    # e-mail notifications (gateway/notifications): unset, they wait in the outbox until it is set.
    smtp_url: str = Field(
        default="",
        description="smtp://[user[:password]@]host[:port] (STARTTLS, port 587) or smtps://... (TLS, port 465)",
    )
    smtp_password: SecretStr = Field(
        default=SecretStr(""), description="the SMTP password, when it is not in PHIGATE_SMTP_URL"
    )
    smtp_from: str = Field(default="", description="sender address; default phigate@<host of PHIGATE_PUBLIC_URL>")
    smtp_ca_file: Path | None = Field(
        default=None, description="PEM file of the CA that signs the SMTP server's certificate (default: the system's)"
    )
    # Nine answers at most per message, all within the outbox's two-minute claim on it.
    smtp_timeout: float = Field(default=10.0, gt=0, le=12, description="seconds to wait for each SMTP answer")
    notify_digest_hour: int = Field(default=7, ge=0, le=23, description="UTC hour at which daily digests leave")
    notify_interval_seconds: int = Field(
        default=300, ge=0, description="how often serve sends digests and expiry reminders (0: off)"
    )

    # transfers
    max_file_size: int = Field(default=5 * 1024**3, ge=1, description="bytes of plaintext per file")
    max_files_per_transfer: int = Field(default=20, ge=1, le=1000)
    allowed_file_types: Csv = (
        "pdf",
        "tif",
        "tiff",
        "png",
        "jpg",
        "jpeg",
        "txt",
        "csv",
        "835",
        "837",
        "x12",
        "edi",
        "docx",
        "xlsx",
        "zip",
    )
    default_access_days: int = Field(default=7, ge=1)
    max_access_days: int = Field(default=30, ge=1)
    emergency_max_hours: int = Field(default=24, ge=1, le=72)

    # resumable uploads (tus, gateway/uploads)
    upload_expiry_hours: int = Field(
        default=24, ge=1, le=24 * 30, description="an unfinished upload is destroyed this long after it began"
    )
    upload_max_unfinished: int = Field(default=20, ge=1, description="unfinished uploads one user may hold")
    upload_max_bytes_held: int = Field(
        default=20 * 1024**3, ge=1, description="declared bytes of one user's unfinished uploads, together"
    )
    upload_expiry_interval_seconds: int = Field(
        default=300, ge=0, description="how often serve destroys expired uploads (0: off)"
    )

    # retention and offboarding (retention/)
    retention_keep_days: int = Field(
        default=30, ge=0, le=3650, description="days ciphertext is kept after a window ends, rejection or revocation"
    )
    retention_run_interval_seconds: int = Field(default=0, ge=0, description="0: no scheduled run inside serve")
    retention_batch_size: int = Field(default=200, ge=1, le=5000)
    retention_workers: int = Field(default=8, ge=1, le=64, description="parallel storage deletions")
    retention_lock_lease_seconds: int = Field(default=120, ge=10)
    retention_in_flight_minutes: int = Field(
        default=60, ge=1, description="downloads/uploads younger than this block offboarding"
    )

    @field_validator("onshore_regions", "onshore_endpoints", "trusted_proxies", "allowed_file_types", mode="before")
    @classmethod
    def _split_csv(cls, value):
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value != "UTC" and value not in zoneinfo.available_timezones():
            raise ValueError("PHIGATE_TIMEZONE must be an IANA time zone name, such as America/New_York")
        return value

    @field_validator("public_url")
    @classmethod
    def _valid_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username
            or parts.query
            or parts.fragment
        ):
            raise ValueError("PHIGATE_PUBLIC_URL is an http(s) URL such as https://gateway.example")
        return value.strip().rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _valid_smtp_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname or parts.path not in ("", "/"):
            # Never echo the value: it may hold the password.
            raise ValueError("PHIGATE_SMTP_URL is smtp://[user[:password]@]host[:port] or smtps://...")
        for key, flag in parse_qsl(parts.query, keep_blank_values=True):
            if key != "starttls" or flag not in ("required", "off"):
                raise ValueError("PHIGATE_SMTP_URL takes one option: ?starttls=off (loopback relays only)")
        return value

    @model_validator(mode="after")
    def _one_worker_with_metrics(self):
        if self.metrics_port is not None and self.workers > 1:
            # Each uvicorn worker would count on its own: one worker per container, scale by replicas.
            raise ValueError(
                "PHIGATE_METRICS_PORT needs PHIGATE_WORKERS=1: run one worker per container and scale with replicas"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value

    # -- derived locations -------------------------------------------------
    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_data_dir / 'phigate.db'}"

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or f"file://{self.resolved_data_dir / 'objects'}"

    @property
    def effective_key_provider_url(self) -> str:
        return self.key_provider_url or f"local://{self.resolved_data_dir / 'keys'}"

    @property
    def effective_cookie_secure(self) -> bool:
        if self.cookie_secure is None:
            return self.env == "production"
        return self.cookie_secure

    @property
    def session_cookie_name(self) -> str:
        # The __Host- prefix makes browsers insist on Secure, Path=/ and no Domain,
        # so a sibling subdomain cannot plant or read the cookie.
        return "__Host-phigate_session" if self.effective_cookie_secure else "phigate_session"

    @property
    def effective_public_url(self) -> str:
        # Browsers offer WebAuthn only in a secure context: https, or http on localhost (never on a bare IP,
        # which cannot be a relying party id), so the development default names localhost.
        return self.public_url or f"http://localhost:{self.port}"

    @property
    def webauthn_origin(self) -> str:
        """The one origin a passkey ceremony may come from (scheme, host and port of the public URL)."""
        parts = urlsplit(self.effective_public_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def webauthn_rp_id(self) -> str:
        """The relying party id: the public URL's host name; credentials are scoped to it."""
        return urlsplit(self.effective_public_url).hostname or "localhost"

    @property
    def smtp_tls(self) -> bool:
        """False only for `smtp://...?starttls=off`: every other form encrypts (TLS or STARTTLS, required)."""
        return "starttls=off" not in urlsplit(self.smtp_url).query

    @property
    def effective_smtp_from(self) -> str:
        return self.smtp_from or f"phigate@{urlsplit(self.effective_public_url).hostname or 'localhost'}"

    @cached_property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.trusted_proxies)

    # -- safety ------------------------------------------------------------
    def warnings(self) -> list[str]:
        """Unsafe embedded defaults in force; printed at start outside production."""
        out = []
        if not self.effective_cookie_secure:
            out.append("session cookies are sent over plain HTTP (PHIGATE_COOKIE_SECURE=false)")
        if self.effective_database_url.startswith("sqlite"):
            out.append("the database is a local SQLite file (one host only)")
        if self.effective_key_provider_url.startswith("local://"):
            out.append("keys live in a local keyring directory meant for a single onshore host")
        if self.effective_storage_url.startswith("file://"):
            out.append("objects live in a local directory (one host only)")
        if self.public_url is None:
            out.append(f"PHIGATE_PUBLIC_URL is not set: passkeys work only at {self.effective_public_url}")
        if not self.smtp_url:
            out.append("PHIGATE_SMTP_URL is not set: e-mail notifications wait in the outbox")
        return out

    def production_problems(self) -> list[str]:
        """Settings refused when PHIGATE_ENV=production, each with its fix."""
        if self.env != "production":
            return []
        problems = []
        if self.cookie_secure is False:
            problems.append("PHIGATE_COOKIE_SECURE=false: session cookies must be Secure in production")
        if self.effective_key_provider_url.startswith("local://") and not self.allow_local_keyring:
            problems.append(
                "the local keyring is for a single onshore host: set PHIGATE_KEY_PROVIDER_URL=awskms://... "
                "or PHIGATE_ALLOW_LOCAL_KEYRING=true to accept it explicitly"
            )
        if (self.resolved_data_dir / "demo-credentials.json").exists():
            problems.append(
                "this data directory holds the demo (demo-credentials.json): demo accounts and "
                "their published passwords must never serve in production"
            )
        if not self.public_url or not self.public_url.startswith("https://"):
            problems.append("PHIGATE_PUBLIC_URL must be the https:// address users reach: passkeys are bound to it")
        if (
            self.metrics_port is not None
            and not self.metrics_token.get_secret_value()
            and not _is_loopback(self.metrics_host)
        ):
            problems.append(
                "the metrics port listens beyond loopback without PHIGATE_METRICS_TOKEN: "
                "set a token that Prometheus presents"
            )
        if self.smtp_url and not self.smtp_tls and not _is_loopback(urlsplit(self.smtp_url).hostname or ""):
            problems.append(
                "PHIGATE_SMTP_URL has ?starttls=off for a server beyond loopback: mail and its password would "
                "cross the network in clear"
            )
        if self.host in ("0.0.0.0", "::") and not self.trusted_proxies:  # noqa: S104 - checks for it, binds nothing
            problems.append("listening on all interfaces without PHIGATE_TRUSTED_PROXIES: put a TLS proxy in front")
        return problems

    def redacted(self) -> dict[str, str]:
        """The effective configuration with secrets and URL credentials hidden."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = "**********" if value.get_secret_value() else ""
            elif isinstance(value, tuple):
                shown = ",".join(value)
            elif value is None:
                shown = ""
            else:
                shown = str(value)
            out[name] = shown
        out["database_url"] = _redact_url(self.effective_database_url)
        out["storage_url"] = _redact_url(self.effective_storage_url)
        out["key_provider_url"] = _redact_url(self.effective_key_provider_url)
        out["smtp_url"] = _redact_url(self.smtp_url)
        out["cookie_secure"] = str(self.effective_cookie_secure).lower()
        return out


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _redact_url(url: str) -> str:
    """Hide a password in `scheme://user:password@host` and any secret-looking query value."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc and not parts.query:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        netloc = f"{user}:**********@{host}" if ":" in creds else f"{user}@{host}"
    query = urlencode(
        [
            (k, "**********" if any(s in k.lower() for s in ("secret", "password", "token")) else v)
            for k, v in parse_qsl(parts.query)
        ]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class ConfigurationRefused(RuntimeError):
    """Production mode met an unsafe setting."""


def check_production(settings: Settings) -> None:
    problems = settings.production_problems()
    if problems:
        raise ConfigurationRefused(
            "PHIGATE_ENV=production refuses these settings:\n" + "\n".join(f"  - {p}" for p in problems)
        )
