"""JSON logs carrying lead id and event id; personal data never goes into a log record."""

import json
import logging
import logging.config
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

lead_id_var: ContextVar[str | None] = ContextVar("lead_id", default=None)
event_id_var: ContextVar[str | None] = ContextVar("event_id", default=None)

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged as a field.
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line with time, level, logger, message, ids and `extra` fields."""

    def __init__(self, service: str = "leadrelay") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (lead_id := lead_id_var.get()) is not None:
            entry["lead_id"] = lead_id
        if (event_id := event_id_var.get()) is not None:
            entry["event_id"] = event_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(service: str, level: str) -> dict[str, Any]:
    """dictConfig for the service and uvicorn, all in JSON on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            # Libraries that log SQL with its bound values or whole messages at DEBUG: never below
            # WARNING, whatever LOG_LEVEL says, so personal data cannot reach the logs through them.
            "aiokafka": {"level": "WARNING"},
            "aiosqlite": {"level": "WARNING"},
            "asyncpg": {"level": "WARNING"},
            "sqlalchemy": {"level": "WARNING"},
        },
    }


def configure_logging(service: str, level: str) -> None:
    """Install JSON logging for this process."""
    logging.config.dictConfig(logging_config(service, level))
