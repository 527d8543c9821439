"""Consuming events: a fetch loop, a dispatcher over a typed handler table, a retry policy, dead letters.

    handlers = Handlers().on(LeadScored, on_lead_scored)
    consumer = EventConsumer(settings=..., bus=..., sessions=..., handlers=handlers, metrics=...)

Each part has one reason to change: `loop` talks to Kafka (fetch, offsets, lag, rejoining after a
broker lost its data), `dispatch` turns a batch of records into one database transaction,
`retry` decides how long to wait and when to give up, `deadletter` publishes what cannot be handled.
"""

from leadrelay.consumer.handlers import BatchHandler, Handler, Handlers
from leadrelay.consumer.loop import EventConsumer

__all__ = ["BatchHandler", "EventConsumer", "Handler", "Handlers"]
