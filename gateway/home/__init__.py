"""The home page of each role: the work waiting for the user, composed from the domains' read functions."""
