"""Sign-in hours: the hours of the day, in an organisation's own time zone, in which its users sign in.

An organisation names an IANA zone (`America/New_York`) and optionally its own hours; unset,
the operator's (PHIGATE_TIMEZONE, PHIGATE_AUDIT_ALERT_ALLOWED_HOURS) apply. The alert on sign-ins
outside them converts each sign-in's UTC instant to that zone, so daylight saving time is the
zone database's business, never a fixed offset's.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime, tzinfo
from functools import cache

from gateway.errors import InvalidInput

HOURS = re.compile(r"^([01][0-9]|2[0-4])-([01][0-9]|2[0-4])$")


@cache
def known() -> frozenset[str]:
    """Every IANA zone name this machine knows (UTC even without a zone database)."""
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


def zones() -> list[str]:
    """The zone names, sorted: the administrator's choices."""
    return sorted(known())


def zone(name: str) -> tzinfo:
    """The zone named `name`; InvalidInput (422 `invalid_timezone`) for a name the zone database does not hold."""
    if name not in known():
        raise InvalidInput("Choose a time zone by its IANA name, such as America/New_York.", code="invalid_timezone")
    return UTC if name == "UTC" else zoneinfo.ZoneInfo(name)


def parse(hours: str) -> tuple[int, int]:
    """`HH-HH` as (start, end); InvalidInput (422 `invalid_hours`) otherwise. `22-06` spans midnight."""
    found = HOURS.match(hours)
    if found is None:
        raise InvalidInput("Give the sign-in hours as HH-HH, such as 08-18.", code="invalid_hours")
    return int(found[1]), int(found[2])


def within(at: datetime, zone_name: str, hours: str) -> tuple[bool, datetime]:
    """Whether the instant `at` falls inside `hours` of the zone's local day, and the local time it is there."""
    local = at.astimezone(zone(zone_name))
    start, end = parse(hours)
    if start <= end:
        return start <= local.hour < end, local
    return (local.hour >= start or local.hour < end), local
