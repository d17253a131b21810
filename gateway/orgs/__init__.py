"""Organisations: practices (covered entities), vendors (business associates), the onshore operator."""
