"""The auditor feature: search, access review, alerts, exports, proofs, and their pages, API and CLI."""
