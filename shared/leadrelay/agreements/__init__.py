"""Co-signed, versioned agreements (ICP, routing rules, SLA): one part every owning service plugs its kind into."""

from leadrelay.agreements.kinds import AgreementKind, ApprovalRule, DocumentError, Quorum, all_of, any_of, unique_names
from leadrelay.agreements.router import agreement_router

__all__ = [
    "AgreementKind",
    "ApprovalRule",
    "DocumentError",
    "Quorum",
    "agreement_router",
    "all_of",
    "any_of",
    "unique_names",
]
