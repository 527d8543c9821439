"""`POST /v1/webhooks/{name}`: no API key; the sender's own signature is the authentication."""

import logging
import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status

from intake.sources import service as sources
from intake.sources.crypto import SecretBoxDep
from intake.sources.schemas import EXAMPLE_SOURCE_NAME
from intake.webhooks import mapping, service
from intake.webhooks.kinds import KINDS
from intake.webhooks.kinds.base import Delivery, PayloadInvalid, SignatureInvalid
from intake.webhooks.schemas import WebhookAccepted
from leadrelay.db import SessionDep
from leadrelay.events import utcnow
from leadrelay.limits import RateLimiter
from leadrelay.openapi import problem_responses
from leadrelay.problems import VALIDATION_PROBLEM, FieldError, ProblemException
from leadrelay.runtime import get_runtime

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

SourceName = Annotated[str, Path(max_length=100, description="The source's name.", examples=[EXAMPLE_SOURCE_NAME])]
_INSTANCE = f"/v1/webhooks/{EXAMPLE_SOURCE_NAME}"
_UNVERIFIED = "The webhook signature could not be verified."
_HUBSPOT_BATCH_EXAMPLE = [
    {
        "eventId": 100,
        "subscriptionId": 12345,
        "portalId": 62515,
        "occurredAt": 1564113600000,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": 123,
        "changeSource": "CRM",
        "propertyName": "email",
        "propertyValue": "ada@example.com",
        "appId": 54321,
    }
]
_OPENAPI_EXTRA: dict[str, Any] = {
    # No API key: tests/e2e/test_auth_matrix.py checks these operations for 401 on a bad signature.
    "x-signature-auth": True,
    "requestBody": {
        "required": True,
        "description": "The sender's payload, byte for byte as it signed it (see docs/sources.md for each kind).",
        "content": {
            "application/json": {"schema": {}, "example": _HUBSPOT_BATCH_EXAMPLE},
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}},
                "example": {"email": "ada@example.com", "first_name": "Ada", "company": "Analytical Engines Ltd"},
            },
        },
    },
}


@router.post(
    "/{name}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted,
    summary="Receive a signed webhook",
    openapi_extra=_OPENAPI_EXTRA,
    responses={
        200: {"description": "A replay: this delivery was already accepted; nothing changed", "model": WebhookAccepted},
        **problem_responses(
            401,
            422,
            429,
            503,
            instance=_INSTANCE,
            details={401: _UNVERIFIED, 422: "records.0.email: value is not a valid email address"},
        ),
    },
)
async def receive_webhook(
    name: SourceName, request: Request, session: SessionDep, box: SecretBoxDep, response: Response
) -> WebhookAccepted:
    """Verify the delivery as its platform signs it, then store every lead it carries in one transaction.

    Authenticated by the sender's signature, not an API key: an unknown or disabled source, a wrong,
    expired or stale signature all answer 401 and store nothing. A delivery accepted in the last 72
    hours answers 200 with the same lead ids and changes nothing.
    """
    now = utcnow()
    source = await sources.get(session, name=name)
    if source is None or not source.enabled:
        raise _unverified(name, "no enabled source of that name")
    body = await request.body()
    delivery = Delivery(
        method=request.method,
        uri=_sender_uri(request),
        headers=request.headers,
        query=request.query_params,
        body=body,
        now=now,
        token_header=sources.token_header(source),
        content_type=request.headers.get("content-type", ""),
    )
    kind = KINDS[source.kind]
    try:
        delivery_id = kind.verify(delivery, sources.active_secrets(source, box=box, now=now))
    except SignatureInvalid as refused:
        raise _unverified(name, str(refused)) from None
    # Counted once verified: a forger cannot spend a real sender's rate.
    wait = _source_limiter(request).acquire(source.name)
    if wait:
        raise ProblemException(
            429,
            "Too Many Requests",
            f"Source {source.name} sent more deliveries than its rate allows; retry after the Retry-After seconds.",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    try:
        records = kind.records(delivery)
        leads_in = mapping.to_leads(
            records, builtin=kind.builtin_mapping, custom=source.field_mapping, source_name=source.name
        )
    except PayloadInvalid as invalid:
        problem = ProblemException(
            422, "Invalid request", f"{invalid.field}: {invalid.message}", type_=VALIDATION_PROBLEM
        )
        pointer = "/" + invalid.field.replace(".", "/")
        problem.problem.errors = [FieldError(field=invalid.field, pointer=pointer, message=invalid.message)]
        raise problem from None
    source_name, source_kind = source.name, source.kind  # the commit below expires the loaded source
    accepted = await service.accept(session, source=source_name, delivery_id=delivery_id, leads_in=leads_in, now=now)
    if accepted.replay:
        response.status_code = status.HTTP_200_OK
    logger.info(
        "webhook accepted",
        extra={"source": source_name, "kind": source_kind, "leads": len(accepted.lead_ids), "replay": accepted.replay},
    )
    return WebhookAccepted(lead_ids=accepted.lead_ids)


def _source_limiter(request: Request) -> RateLimiter:
    """This process's per-source rate (WEBHOOK_RATE_PER_SOURCE_PER_SECOND), created on first use."""
    limiter: RateLimiter | None = getattr(request.app.state, "webhook_limiter", None)
    if limiter is None:
        settings = get_runtime(request).settings
        limiter = RateLimiter(settings.webhook_rate_per_source_per_second, settings.webhook_rate_burst)
        request.app.state.webhook_limiter = limiter
    return limiter


def _sender_uri(request: Request) -> str:
    # HubSpot signs the URI it posted to; behind a proxy that is WEBHOOK_PUBLIC_URL, not what we see.
    public_url = get_runtime(request).settings.webhook_public_url
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    base = public_url or f"{request.url.scheme}://{request.url.netloc}"
    return f"{base}{path}" + (f"?{query}" if query else "")


def _unverified(name: str, reason: str) -> ProblemException:
    # The reason is logged, never answered: a prober learns nothing about which check failed.
    logger.warning("webhook refused", extra={"source": name, "reason": reason})
    return ProblemException(401, "Unauthorized", _UNVERIFIED, headers={"WWW-Authenticate": "Signature"})
