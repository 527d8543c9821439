"""Named sales regions as sets of ISO 3166-1 alpha-2 country codes (the table `region` criteria read)."""

from collections.abc import Iterable


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


EUROPE = _codes(
    "AD AL AT BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI LT LU LV MC MD ME "
    "MK MT NL NO PL PT RO RS RU SE SI SK SM UA VA XK AX SJ"
)
MIDDLE_EAST = _codes("AE BH IL IQ IR JO KW LB OM PS QA SA SY TR YE")
AFRICA = _codes(
    "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA MG ML MR MU MW MZ "
    "NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW"
)
NORTH_AMERICA = _codes("US CA PM BM GL")
LATIN_AMERICA = _codes(
    "MX GT BZ SV HN NI CR PA CU DO HT JM PR BS BB TT AG DM GD KN LC VC AI AW BL BQ CW GP KY MF MQ MS SX TC VG VI "
    "AR BO BR CL CO EC FK GF GY PE PY SR UY VE"
)
ASIA_PACIFIC = _codes(
    "AF AM AZ BD BN BT CN GE HK ID IN JP KG KH KP KR KZ LA LK MM MN MO MV MY NP PH PK SG TH TJ TL TM TW UZ VN "
    "AU NZ FJ PG SB VU NC PF WS TO KI TV NR FM MH PW CK NU TK WF AS GU MP NF CX CC IO PN"
)
EUROPEAN_UNION = _codes("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK")

REGIONS: dict[str, frozenset[str]] = {
    "EMEA": EUROPE | MIDDLE_EAST | AFRICA,
    "EUROPE": EUROPE,
    "EU": EUROPEAN_UNION,
    "DACH": frozenset({"DE", "AT", "CH"}),
    "NORDICS": frozenset({"DK", "FI", "IS", "NO", "SE"}),
    "BENELUX": frozenset({"BE", "NL", "LU"}),
    "UKI": frozenset({"GB", "IE"}),
    "MIDDLE_EAST": MIDDLE_EAST,
    "AFRICA": AFRICA,
    "NA": NORTH_AMERICA,
    "LATAM": LATIN_AMERICA,
    "AMER": NORTH_AMERICA | LATIN_AMERICA,
    "APAC": ASIA_PACIFIC,
    "ANZ": frozenset({"AU", "NZ"}),
}
"""Region name -> its countries. NA is the United States and Canada (Mexico is in LATAM)."""

COUNTRIES = frozenset().union(*REGIONS.values())
"""Every country code a region may name or a `countries` list may hold."""


def countries_of(regions: Iterable[str], countries: Iterable[str] = ()) -> frozenset[str]:
    """The country codes of these regions plus these countries (upper-cased)."""
    codes = {country.upper() for country in countries}
    for region in regions:
        codes |= REGIONS[region.upper()]
    return frozenset(codes)
