"""Structured logs: one JSON object per line, each stamped with the id of the request being served.

The request id is set by the telemetry middleware (gateway.telemetry) in a
context variable, which follows the request into the worker threads that run
its database, key and storage work (anyio copies the context), so every log line
and every audit event of one request carries the same id; the id is also sent
back in the `X-Request-Id` response header and, behind nginx, is nginx's own.

What goes into a line is what the code passes: ids, counts, codes and route
templates, never a file name, purpose or note (docs/threat-model.md).  The
standard library's logging is enough: no second logging framework.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID: ContextVar[str | None] = ContextVar("phigate_request_id", default=None)

# What we accept from a trusted proxy: nginx's $request_id is 32 hex digits.
_ACCEPTED_ID = re.compile(r"[0-9A-Za-z-]{16,64}")

# Attributes every LogRecord has; anything else on a record came through `extra=` and is logged as a field.
# uvicorn's color_message repeats the message with terminal colours.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def new_request_id(offered: str | None = None) -> str:
    """The proxy's id when it is well formed (the caller checks the proxy is trusted), else a fresh one."""
    if offered and _ACCEPTED_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return REQUEST_ID.get()


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, request_id, any `extra=` fields, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            out["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = REQUEST_ID.get()
        return f"{line} [request {request_id}]" if request_id else line


def configure(fmt: str = "json", level: str = "INFO", stream=None) -> None:
    """Send every logger (ours and uvicorn's) to one handler in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else _TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings (unsafe defaults) become log lines too
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # uvicorn's access line carries the raw path and query; gateway.telemetry logs the route template instead.
    logging.getLogger("uvicorn.access").disabled = True
