"""Retention and offboarding: policies, legal holds, destruction jobs, signed destruction certificates.

Uses `crypto/` (key destruction, signing), `storage/` (destroy every version, verify
absence) and the gateway's models; it knows nothing of HTTP.  See
docs/destruction-certificate.md.
"""
