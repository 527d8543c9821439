"""Answer of `POST /v1/webhooks/{name}`."""

from pydantic import BaseModel, ConfigDict

from intake.leads.schemas import EXAMPLE_LEAD_ID


class WebhookAccepted(BaseModel):
    """The leads the delivery made (empty when none of its records names a person)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"lead_ids": [EXAMPLE_LEAD_ID, "c2b0f7a4-8e1d-4f3b-9a6c-5d4e3f2a1b0c"]}]}
    )

    lead_ids: list[str]
