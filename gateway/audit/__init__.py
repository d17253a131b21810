"""The audit log core: events, `record_event()`, the stored tree, signed checkpoints, verification."""
