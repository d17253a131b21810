"""Errors of retention and offboarding: members of the gateway's one exception family."""

from gateway.errors import GatewayError


class RunnerBusy(GatewayError):
    status = 409
    code = "runner_busy"
    message = "Another destruction runner is working; try again when it has finished."


class InFlight(GatewayError):
    status = 409
    code = "transfers_in_flight"
    message = "Transfers of this vendor are in flight; nothing was changed."


class NothingToOffboard(GatewayError):
    status = 409
    code = "no_relationship"
    message = "This practice and vendor have never had a BAA or exchanged files; nothing was changed."
