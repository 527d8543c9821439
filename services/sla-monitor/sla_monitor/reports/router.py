"""`/v1/sla/...`: a lead's obligations, the leads at risk and the compliance report (scope `sla:read`)."""

from fastapi import APIRouter

router = APIRouter(tags=["sla"])
