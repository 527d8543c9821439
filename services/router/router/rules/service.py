"""The ruleset in force: the active `routing` agreement compiled once per version, or the built-in one."""

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.agreements import service as agreements
from leadrelay.agreements.models import AgreementHead
from router.rules.document import ROUTING, RoutingDocument
from router.rules.engine import CompiledRules, compile_rules

BUILTIN_VERSION = "builtin"
"""The version recorded by decisions made before any routing agreement is signed."""
DEFAULT_TEAM_ID = "default"
"""The team of the built-in ruleset: open around the clock, created at start when missing (`seed_defaults`)."""


def builtin_document(default_rep_id: str) -> RoutingDocument:
    """Every lead to the default rep, or to the default team's queue when that rep cannot take it."""
    return RoutingDocument.model_validate(
        {
            "rules": [
                {
                    "name": "default",
                    "when": "always",
                    "action": {"type": "rep", "rep": default_rep_id},
                    "otherwise": {"type": "queue", "team": DEFAULT_TEAM_ID},
                }
            ]
        }
    )


_ACTIVE_VERSION = select(AgreementHead.active_version).where(AgreementHead.kind == ROUTING.name)


class Rulesets:
    """This process's compiled rulesets, one per version, compiled once.

    The active version is read from the agreement head on every call (one primary-key read), so an
    activation on any replica is seen by the others at their next batch.
    """

    def __init__(self, *, default_rep_id: str) -> None:
        self._compiled: dict[int, CompiledRules] = {}
        self.builtin = compile_rules(builtin_document(default_rep_id), version=BUILTIN_VERSION)

    async def active(self, session: AsyncSession) -> CompiledRules:
        """The ruleset in force now: the active version, or the built-in one before any is signed."""
        version = (await session.exec(_ACTIVE_VERSION)).first()
        return self.builtin if version is None else await self.version(session, version)

    async def version(self, session: AsyncSession, version: int) -> CompiledRules:
        """One version (any status), compiled on first use; LookupError if it does not exist."""
        compiled = self._compiled.get(version)
        if compiled is None:
            record = await agreements.get(session, kind=ROUTING.name, version=version)
            if record is None:
                raise LookupError(f"routing version {version} does not exist")
            document = RoutingDocument.model_validate(record.version.document)
            compiled = self._compiled[version] = compile_rules(document, version=str(version))
        return compiled
