"""HTTP and CLI glue for retention/: pages, JSON API, `phigate retention|offboard|certificate`."""
