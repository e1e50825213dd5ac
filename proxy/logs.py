"""Logging setup: human text or one JSON object per line, and structured events.

Events (a node going down, a failover, a client rejected) are logged with
`log_event(logger, "node_down", node="10.0.0.1:6379", reason="timeout")`: one line each,
`key=value` pairs in text mode, top-level fields in JSON mode, so log pipelines can
filter on them. Nothing here is meant for the per-command path (no
per-command logging: a log line per command would cost more than the command).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from config.model import LogFormat

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
# Marks the handler `setup_logging` installed, so calling it again replaces it.
_HANDLER_FLAG = "_georedis_handler"


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    ms = int(record.msecs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms:03d}Z"


def _text_value(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    # Quote values a `key=value` parser would otherwise split.
    if s == "" or any(c in s for c in ' ="\n\t'):
        return json.dumps(s)
    return s


class TextFormatter(logging.Formatter):
    """`2024-05-01T12:00:00.123Z info proxy.backend.health node_down node=a:1 reason=timeout`."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname.lower()} {record.name} "
        msg = record.getMessage()
        line += msg
        fields = _extra_fields(record)
        if fields.get("event") == msg:
            del fields["event"]  # log_event's message already is the event name
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in _extra_fields(record).items():
            obj.setdefault(k, v)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


def setup_logging(
    fmt: str | LogFormat = "text", level: str = "info", stream: TextIO | None = None
) -> logging.Handler:
    """Install one handler on the root logger (replacing a previous one of ours)."""
    fmt_value = fmt.value if isinstance(fmt, LogFormat) else fmt
    if fmt_value not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {fmt_value!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_FLAG, False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt_value == "json" else TextFormatter())
    setattr(handler, _HANDLER_FLAG, True)
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


def log_event(
    logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any
) -> None:
    """Log `event` with `fields` as structured data; a no-op below the logger's level."""
    if not logger.isEnabledFor(level):
        return
    # Field names that clash with LogRecord attributes would make logging raise.
    extra = {(k if k not in _STANDARD else f"{k}_"): v for k, v in fields.items()}
    extra["event"] = event
    logger.log(level, event, extra=extra)
