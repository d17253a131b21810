"""The audit log: one `record_event()` for every security-relevant action."""
