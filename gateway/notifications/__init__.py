"""E-mail notifications: who is told of what, how often (their preferences), and the mail that leaves.

A domain event (a transfer waiting for approval, an alert) calls `service.notify()` in
its own transaction; each recipient's preference decides whether a message leaves at
once, in the next daily digest, or not at all.  Messages go through the database outbox
(gateway/outbox.py, topic `email`), so none is sent inside a request, none is lost on a
restart, and each attempt is an audit event.  A message names an organisation, a count
and a link to sign in, never a file name, purpose or note: it is built from those three
values only (messages.py).
"""
