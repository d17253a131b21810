"""Every table of the gateway, imported in one place for Alembic and the test fixtures."""

from gateway.audit.models import AuditAlert, AuditCheckpoint, AuditEvent, AuditTreeNode  # noqa: F401
from gateway.auth.models import AddressThrottle, ApiToken, Passkey, PasskeyChallenge, PasskeyPolicy, WebSession  # noqa: F401
from gateway.baas.models import Baa  # noqa: F401
from gateway.db import Base  # noqa: F401
from gateway.leader import LeaderLease  # noqa: F401
from gateway.notifications.models import Notification, NotificationPreference  # noqa: F401
from gateway.orgs.models import Organisation  # noqa: F401
from gateway.outbox import OutboxEntry  # noqa: F401
from gateway.sealed.models import SealedObject  # noqa: F401
from gateway.transfers.models import Download, Transfer, TransferFile, TransferRecipient  # noqa: F401
from gateway.uploads.models import AssemblyPart, Upload, UploadPart  # noqa: F401
from gateway.users.models import RecoveryCode, User  # noqa: F401
from retention.models import Certificate, DestructionJob, DestructionRecord, LegalHold, RetentionPolicy, RunnerLock  # noqa: F401
