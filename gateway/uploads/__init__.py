"""Resumable uploads (tus 1.0): files that arrive over many requests and become a transfer when complete."""
