"""Structured JSON logging (structlog) with per-message context.

FastStream runs all messages of one subscriber in one task, so context variables would leak from
one message to the next: :func:`message_context` binds the ids for one message and clears
them after.
Never pass personal data to a logger: log ids, types and counts only.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route structlog and the stdlib loggers (aiokafka, faststream, uvicorn) to JSON on stdout."""
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            _add_service(service),
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # FastStream gives its default loggers their own coloured handler and stops propagation;
    # send them through the JSON handler like everything else.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("faststream"):
            fs_logger = logging.getLogger(name)
            fs_logger.handlers.clear()
            fs_logger.propagate = True
    # aiokafka is chatty at INFO about every rebalance step; warnings still come through.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    client_log = logging.getLogger("aiokafka")  # aiokafka/client.py logs under this name
    if not any(isinstance(f, NoNodeYetNotice) for f in client_log.filters):
        client_log.addFilter(NoNodeYetNotice())


class NoNodeYetNotice(logging.Filter):
    """Drops aiokafka's "Unable connect to node with id None: StaleMetadata" error. It is logged
    when the client asks for a connection before it knows any broker for the request (a group
    coordinator not found yet, typically on a loaded machine at start-up); the client refreshes
    its metadata and tries again, so nothing is wrong. A failure to reach a *known* broker has
    its id, not None, and is still logged as the error it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        unknown_node = (
            record.msg == "Unable connect to node with id %s: %s"
            and isinstance(record.args, tuple)
            and len(record.args) == 2
            and record.args[0] is None
        )
        return not unknown_node


def _add_service(service: str) -> Any:
    def processor(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)


@contextmanager
def message_context(**ids: str | int | None) -> Iterator[None]:
    """Bind correlation/event ids for one message, then restore the previous ones."""
    tokens = structlog.contextvars.bind_contextvars(
        **{k: v for k, v in ids.items() if v is not None}
    )
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
