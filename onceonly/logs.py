"""Structured logging: one JSON object per line on standard error."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    """Formats a record as one JSON line; ``extra={...}`` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Send the root logger to standard error, as JSON lines (``fmt="json"``) or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format``, for every command that runs a server."""
    parser.add_argument("--log-level", help="debug, info, warning (ONCEONLY_LOG_LEVEL; default info)")
    parser.add_argument("--log-format", choices=["json", "text"], help="ONCEONLY_LOG_FORMAT; default json")


def configure_from_args(args: argparse.Namespace) -> None:
    """Configure logging from the flags of :func:`add_logging_arguments`, then the environment."""
    configure_logging(
        args.log_level or os.environ.get("ONCEONLY_LOG_LEVEL", "info"),
        args.log_format or os.environ.get("ONCEONLY_LOG_FORMAT", "json"),
    )
