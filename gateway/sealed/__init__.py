"""The sealed-object registry (the gateway's core): every encrypted object the gateway stores.

`models.py` is the table, `service.py` the one API that stores, opens, rewraps and
destroys objects, `keys.py` which key and context seal each kind, `errors.py` what
can go wrong, `fsck.py` the reconciliation of the registry with storage.  Nothing
here imports a domain package (transfers, BAAs, retention): they import this.
"""
