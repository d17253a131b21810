"""Every kind of audit event, as one enumeration (the log's vocabulary).

`record_event()` takes an `Action`, never a bare string, so a typo cannot create a
new kind of event; alert rules, metrics and searches name members too.  `Action`
is a `StrEnum`: a member *is* its namespaced string (`auth.login.failed`), so the
stored column, leaf hashes and exports are the same text as before.

Each member carries a one-line description; `scripts/event_table.py` writes the
table in docs/audit.md from them, and a test fails when the two differ.  Add a
member here (with its description) before recording a new kind of event, and
never rename or remove one: old events keep their action for as long as the log
is kept.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class Action(StrEnum):
    """A namespaced event action: `<area>.<object>.<what happened>`."""

    description: str

    def __new__(cls, value: str, description: str = "") -> Action:
        member = str.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    # -- sign-in, second factors, sessions, API tokens (auth) ---------------------
    AUTH_LOGIN_FAILED = "auth.login.failed", "A sign-in was refused (unknown user, wrong password, throttled)."
    AUTH_LOGIN_PASSWORD_ACCEPTED = "auth.login.password_accepted", "The password step of a sign-in succeeded."
    AUTH_LOGIN_SUCCEEDED = "auth.login.succeeded", "A sign-in completed with its second factor."
    AUTH_ACCOUNT_LOCKED = "auth.account.locked", "Too many failed steps locked an account for a while."
    AUTH_MFA_FAILED = "auth.mfa.failed", "A TOTP code, recovery code or passkey was refused at sign-in."
    AUTH_MFA_ENROLLED = "auth.mfa.enrolled", "A user enrolled a TOTP authenticator."
    AUTH_MFA_ENROL_FAILED = "auth.mfa.enrol_failed", "A TOTP enrolment was refused (wrong code)."
    AUTH_MFA_SECRET_UNREADABLE = "auth.mfa.secret_unreadable", "A user's sealed TOTP secret could not be decrypted."
    AUTH_REAUTH_FAILED = "auth.reauth.failed", "A step-up (re-authentication) before a sensitive action failed."
    AUTH_RECOVERY_CODE_USED = "auth.recovery_code.used", "A single-use recovery code replaced the second factor."
    AUTH_RECOVERY_CODES_REGENERATED = "auth.recovery_codes.regenerated", "A user replaced their recovery codes."
    AUTH_PASSWORD_CHANGED = "auth.password.changed", "A user changed their password."
    AUTH_PASSWORD_CHANGE_FAILED = "auth.password.change_failed", "A password change was refused (wrong password)."
    AUTH_PASSKEY_REGISTERED = "auth.passkey.registered", "A user registered a passkey."
    AUTH_PASSKEY_REGISTER_FAILED = "auth.passkey.register_failed", "A passkey registration was refused."
    AUTH_PASSKEY_USED = "auth.passkey.used", "A passkey signed a sign-in or step-up."
    AUTH_PASSKEY_REMOVED = "auth.passkey.removed", "A user removed one of their passkeys."
    AUTH_PASSKEY_REMOVE_REFUSED = (
        "auth.passkey.remove_refused",
        "Removing a passkey was refused (the policy needs one).",
    )
    AUTH_PASSKEY_CLONE_WARNING = "auth.passkey.clone_warning", "A passkey's signature counter went back: maybe cloned."
    AUTH_PASSKEY_ENROLMENT_REQUIRED = (
        "auth.passkey.enrolment_required",
        "A sign-in must register a passkey first (organisation policy).",
    )
    AUTH_SESSION_EXPIRED = "auth.session.expired", "A session ended (timed out, or its user was disabled)."
    AUTH_SESSION_REVOKED = "auth.session.revoked", "Sessions were ended (sign-out, password change, disabled user)."
    AUTH_API_TOKEN_CREATED = "auth.api_token.created", "A user created an API token."
    AUTH_API_TOKEN_REVOKED = "auth.api_token.revoked", "API tokens were revoked."
    AUTH_API_TOKEN_REJECTED = (
        "auth.api_token.rejected",
        ("An unknown, expired or revoked API token was refused (the first of its address window)."),
    )
    AUTH_ADDRESS_THROTTLED = (
        "auth.address.throttled",
        ("A client address reached its limit of failures; it is answered 429 until its window ends."),
    )
    AUTH_ADDRESS_WINDOW_CLOSED = (
        "auth.address.window_closed",
        ("An address window ended: counts of the refusals not recorded one by one and of the 429s."),
    )

    # -- administration -----------------------------------------------------------
    ADMIN_ORG_CREATED = "admin.org.created", "An administrator created an organisation."
    ADMIN_ORG_UPDATED = "admin.org.updated", "An administrator changed an organisation's time zone or sign-in hours."
    ADMIN_USER_CREATED = "admin.user.created", "An administrator created a user."
    ADMIN_USER_DISABLED = "admin.user.disabled", "A user was disabled."
    ADMIN_USER_ENABLED = "admin.user.enabled", "A user was enabled again."
    ADMIN_USER_ROLE_CHANGED = "admin.user.role_changed", "A user's role changed."
    ADMIN_USER_PASSWORD_RESET = "admin.user.password_reset", "An administrator reset a user's password."
    ADMIN_USER_PASSKEYS_RESET = "admin.user.passkeys_reset", "An administrator removed all of a user's passkeys."
    ADMIN_PASSKEY_POLICY_SET = "admin.passkey_policy.set", "A passkey policy was set for an organisation or role."
    ADMIN_PASSKEY_POLICY_REMOVED = "admin.passkey_policy.removed", "A passkey policy was removed."

    # -- business associate agreements --------------------------------------------
    BAA_RECORDED = "baa.recorded", "A BAA between a practice and a vendor was recorded."
    BAA_TERMINATED = "baa.terminated", "A BAA was terminated."
    BAA_COPY_STORED = "baa.copy.stored", "A signed copy of a BAA was stored, sealed."
    BAA_COPY_UPLOAD_FAILED = "baa.copy.upload.failed", "Storing a BAA copy failed; nothing was kept."
    BAA_COPY_DOWNLOADED = "baa.copy.downloaded", "A BAA copy was downloaded."
    BAA_COPY_DOWNLOAD_FAILED = "baa.copy.download.failed", "A BAA copy could not be read or decrypted."

    # -- transfers ------------------------------------------------------------------
    TRANSFER_CREATED = "transfer.created", "A transfer was created, awaiting approval."
    UPLOAD_CREATED = "upload.created", "A resumable upload was created, its gates checked before the first byte."
    UPLOAD_COMPLETED = "upload.completed", "A resumable upload received its last byte and was assembled."
    UPLOAD_USED = "upload.used", "A completed resumable upload became a file of a transfer."
    UPLOAD_CANCELLED = "upload.cancelled", "A sender cancelled an unfinished upload; what it stored was destroyed."
    UPLOAD_EXPIRED = "upload.expired", "An unfinished upload expired; what it stored was destroyed."
    UPLOAD_OFFBOARDED = (
        "upload.offboarded",
        "An unfinished upload to or from a vendor being offboarded was destroyed with what it stored.",
    )
    TRANSFER_FILE_STORED = "transfer.file.stored", "One file of a transfer was encrypted and stored."
    TRANSFER_UPLOAD_DENIED = "transfer.upload.denied", "An upload was refused (no active BAA, wrong partner)."
    TRANSFER_UPLOAD_FAILED = "transfer.upload.failed", "An upload failed part-way; nothing of it was kept."
    TRANSFER_APPROVED = "transfer.approved", "An approver released a transfer, with its window and limits."
    TRANSFER_APPROVE_DENIED = "transfer.approve.denied", "An approval was refused (own transfer, no BAA, wrong state)."
    TRANSFER_APPROVE_STEPUP_FAILED = "transfer.approve.stepup_failed", "The step-up before an approval failed."
    TRANSFER_REJECTED = "transfer.rejected", "An approver rejected a transfer."
    TRANSFER_REJECT_DENIED = "transfer.reject.denied", "A rejection was refused."
    TRANSFER_REVOKED = "transfer.revoked", "An approved transfer was revoked."
    TRANSFER_REVOKE_DENIED = "transfer.revoke.denied", "A revocation was refused."
    TRANSFER_EMERGENCY_ACCESS_OPENED = (
        "transfer.emergency_access.opened",
        "Break-glass access released a transfer without the usual approval.",
    )
    TRANSFER_EMERGENCY_ACCESS_DENIED = "transfer.emergency_access.denied", "Break-glass access was refused."
    TRANSFER_EMERGENCY_ACCESS_STEPUP_FAILED = (
        "transfer.emergency_access.stepup_failed",
        "The step-up before break-glass access failed.",
    )
    TRANSFER_EMERGENCY_ACCESS_REVIEWED = (
        "transfer.emergency_access.reviewed",
        "A privacy officer reviewed a break-glass access.",
    )
    TRANSFER_DOWNLOAD_STARTED = "transfer.download.started", "A download began streaming."
    TRANSFER_DOWNLOAD_COMPLETED = "transfer.download.completed", "A download streamed the whole file."
    TRANSFER_DOWNLOAD_RANGE_DELIVERED = "transfer.download.range_delivered", "A byte range of a file was delivered."
    TRANSFER_DOWNLOAD_ABORTED = "transfer.download.aborted", "The client went away before a download ended."
    TRANSFER_DOWNLOAD_FAILED = "transfer.download.failed", "A download failed on the server (storage or decryption)."
    TRANSFER_DOWNLOAD_DENIED = (
        "transfer.download.denied",
        "A download was refused (not approved, expired, not a recipient).",
    )
    TRANSFER_DESTROYED = "transfer.destroyed", "Every file of a transfer was destroyed."

    # -- retention, legal holds, offboarding ---------------------------------------------
    RETENTION_POLICY_UPDATED = "retention.policy.updated", "A practice's retention policy was set."
    RETENTION_POLICY_REMOVED = "retention.policy.removed", "A retention policy was removed (the default applies)."
    RETENTION_HOLD_PLACED = "retention.hold.placed", "A legal hold was placed; held data is not destroyed."
    RETENTION_HOLD_RELEASED = "retention.hold.released", "A legal hold was released."
    RETENTION_RUN_STARTED = "retention.run.started", "A destruction job started."
    RETENTION_JOB_INTERRUPTED = (
        "retention.job.interrupted",
        "A destruction job stopped part-way; it resumes on the next run.",
    )
    RETENTION_OBJECT_DESTROYING = (
        "retention.object.destroying",
        "A file was marked for destruction; no read starts after.",
    )
    RETENTION_OBJECT_STORAGE_DESTROYED = (
        "retention.object.storage_destroyed",
        "Every stored version of a file's object was deleted and verified gone.",
    )
    RETENTION_OBJECT_STORAGE_BLOCKED = (
        "retention.object.storage_blocked",
        "Object Lock kept a file's ciphertext; its data key is erased instead.",
    )
    RETENTION_OBJECT_STORAGE_FAILED = (
        "retention.object.storage_failed",
        "Deleting a file's object failed; retried later.",
    )
    RETENTION_OBJECT_CRYPTO_SHREDDED = "retention.object.crypto_shredded", "A file's wrapped data key was erased."
    RETENTION_OBJECT_DESTROYED = "retention.object.destroyed", "A file's destruction is complete."
    RETENTION_CERTIFICATE_ISSUED = "retention.certificate.issued", "A signed destruction certificate was issued."
    OFFBOARDING_STARTED = "offboarding.started", "A vendor's offboarding began: everything sent to it is destroyed."
    OFFBOARDING_STEPUP_FAILED = "offboarding.stepup_failed", "The step-up before an offboarding failed."
    OFFBOARDING_KEY_DESTROYED = "offboarding.key.destroyed", "The practice-vendor key was destroyed at offboarding."
    OFFBOARDING_KEY_KEPT = "offboarding.key.kept", "The practice-vendor key could not be destroyed and was kept."

    # -- keys and storage ---------------------------------------------------------------
    KEYS_ROTATED = "keys.rotated", "A key-encryption key got a new version."
    KEYS_REWRAPPED = "keys.rewrapped", "Wrapped data keys were rewrapped under current key versions."
    STORAGE_OBJECT_MISSING = "storage.object.missing", "fsck found registered objects missing from storage."
    STORAGE_ORPHAN_DESTROYED = "storage.orphan.destroyed", "fsck destroyed a stored object nothing refers to."

    # -- the audit log itself -----------------------------------------------------------
    AUDIT_EXPORT_CREATED = "audit.export.created", "An auditor exported events (CSV or JSON Lines), signed."
    AUDIT_LOG_VERIFIED = "audit.log.verified", "A full verification of the log ran (its outcome says how it went)."
    AUDIT_LOG_PRUNED = "audit.log.pruned", "Events older than the audit retention were pruned at a signed checkpoint."
    AUDIT_ACCESS_REVIEW_VIEWED = "audit.access_review.viewed", "An auditor viewed a vendor's access review."
    AUDIT_ACCESS_REVIEW_ACCOUNT_DISABLED = (
        "audit.access_review.account_disabled",
        "The access review disabled a dormant account.",
    )
    AUDIT_ALERT_RAISED = "audit.alert.raised", "An alert rule raised a flag (sent through the outbox)."
    AUDIT_ALERT_ACKNOWLEDGED = "audit.alert.acknowledged", "An auditor acknowledged an alert."

    # -- notifications -------------------------------------------------------------------
    NOTIFICATION_EMAIL_SENT = "notification.email.sent", "The SMTP server accepted an e-mail notification."
    NOTIFICATION_EMAIL_FAILED = (
        "notification.email.failed",
        "An e-mail notification could not be handed over (server down, 4xx); the outbox retries it.",
    )
    NOTIFICATION_EMAIL_REFUSED = (
        "notification.email.refused",
        "The SMTP server refused an e-mail notification for good (5xx); it is kept, not retried.",
    )
    NOTIFICATION_PREFERENCES_CHANGED = (
        "notification.preferences.changed",
        "A user changed how often they are told of a topic (immediately, daily digest, off).",
    )

    # -- HTTP ------------------------------------------------------------------------------
    REQUEST_REFUSED = "request.refused", "A request was refused for lack of authentication or permission."
