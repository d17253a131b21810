"""Transfers: encrypted upload, BAA and approval gates, logged download."""
