"""One module per kind of sender; KINDS maps each SourceKind to its verifier and record reader."""

from intake.sources.models import SourceKind
from intake.webhooks.kinds import hubspot, marketo, mautic, pardot, segment, standard
from intake.webhooks.kinds.base import Kind

KINDS: dict[SourceKind, Kind] = {
    SourceKind.HUBSPOT: hubspot.HubSpot(),
    SourceKind.MAUTIC: mautic.Mautic(),
    SourceKind.SEGMENT: segment.Segment(),
    SourceKind.MARKETO: marketo.Marketo(),
    SourceKind.PARDOT: pardot.Pardot(),
    SourceKind.STANDARD: standard.Standard(),
}
