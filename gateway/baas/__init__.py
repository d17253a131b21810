"""Business associate agreements: no PHI moves between a practice and a vendor without an active one."""
