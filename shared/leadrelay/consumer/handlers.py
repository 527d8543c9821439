"""The handler table: one entry per event type, typed by the event's payload class."""

from __future__ import annotations  # Handler[D] is a type-checking alias: CloudEvent[D] is no typing generic

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.events import CloudEvent, EventData

D = TypeVar("D", bound=EventData)

Handler = Callable[[CloudEvent[D], AsyncSession], Awaitable[None]]
"""Handles one event inside the consumer's transaction (it must not commit)."""

BatchHandler = Callable[[Sequence[CloudEvent[D]], AsyncSession], Awaitable[None]]
"""Handles consecutive events of one type at once, where set-based SQL pays; same transaction rules."""


@dataclass(frozen=True)
class Route(Generic[D]):
    """How events of one type are handled: one by one, or in runs."""

    data_type: type[D]
    one: Handler[D] | None = None
    batch: BatchHandler[D] | None = None

    async def handle(self, events: Sequence[CloudEvent[Any]], session: AsyncSession) -> None:
        """Run the handler over events of this route's type, in order."""
        if self.batch is not None:
            await self.batch(events, session)
            return
        assert self.one is not None
        for event in events:
            await self.one(event, session)


class Handlers:
    """Message type to handler: the one table a service declares its consumption in."""

    def __init__(self) -> None:
        self._routes: dict[str, Route[Any]] = {}

    def on(self, data_type: type[D], handler: Handler[D]) -> Handlers:
        """Handle each event of `data_type` with `handler`."""
        _check_event_type(data_type, handler)
        return self._add(Route(data_type, one=handler))

    def on_batch(self, data_type: type[D], handler: BatchHandler[D]) -> Handlers:
        """Handle runs of consecutive `data_type` events with one call of `handler`."""
        _check_event_type(data_type, handler, batch=True)
        return self._add(Route(data_type, batch=handler))

    def extend(self, other: Handlers) -> Handlers:
        """Add every route of `other` (the platform's routes joined with a service's own)."""
        for route in other._routes.values():
            self._add(route)
        return self

    def _add(self, route: Route[Any]) -> Handlers:
        if route.data_type.event_type in self._routes:
            raise ValueError(f"two handlers for {route.data_type.event_type}")
        self._routes[route.data_type.event_type] = route
        return self

    def route(self, event_type: str) -> Route[Any] | None:
        """The route of an event type, or None when this service does not handle it."""
        return self._routes.get(event_type)

    @property
    def topics(self) -> list[str]:
        """The topics these handlers need, sorted."""
        return sorted({route.data_type.topic.value for route in self._routes.values()})

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)


def _check_event_type(data_type: type[EventData], handler: Callable[..., Any], *, batch: bool = False) -> None:
    # A handler annotated for another payload is a wiring mistake: fail when the service starts.
    try:
        parameters = list(inspect.signature(handler, eval_str=True).parameters.values())
    except (TypeError, ValueError, NameError):
        return  # not introspectable (a builtin or a mock): nothing to check
    if not parameters:
        raise TypeError(f"handler {handler!r} takes no event")
    annotation = parameters[0].annotation
    if batch:  # Sequence[CloudEvent[X]]
        arguments = typing.get_args(annotation)
        annotation = arguments[0] if len(arguments) == 1 else None
    metadata = getattr(annotation, "__pydantic_generic_metadata__", None)
    if metadata and metadata.get("origin") is CloudEvent:
        (declared,) = metadata["args"]
        if declared is not Any and declared is not data_type and not _is_type_var(declared):
            raise TypeError(
                f"handler {getattr(handler, '__name__', handler)!r} takes CloudEvent[{declared.__name__}] "
                f"but is registered for {data_type.__name__}"
            )


def _is_type_var(value: object) -> bool:
    return isinstance(value, TypeVar)
