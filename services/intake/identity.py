"""Cross-agency possible-duplicate detection by keyed hashes of normalised identity fields.

Two agencies may register the same returnee. Intake computes, for every case, HMAC-SHA256
hashes (key held by intake only, see settings) of normalised identity fields; two cases of
different agencies sharing a hash are a *possible* duplicate. The hashes reveal nothing without
the key; the link is signalled as a case id only (docs/intake.md has the rules for partners).

Normalisation (applied to every field before hashing):
1. Unicode NFKD, diacritics removed, case folded ("Ndèye" → "ndeye", "ß" → "ss");
2. names: every character that is not a letter becomes a space; the given, family and other
   names are split into words and the words are **sorted**, so "Awa Diop" = "DIOP Awa" and a
   swapped given/family name still matches;
3. dates of birth: ISO ``YYYY-MM-DD``;
4. document numbers: letters and digits only, upper case, prefixed by the issuing country.

Hashes made (each a separate link): ``name+dob`` when a date of birth is given, and one
``document`` hash per identity document. A name alone, or a birth year, is never enough.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

from shared.contracts import events as ev

_NON_LETTER = re.compile(r"[^\w]|[\d_]", re.UNICODE)
_NON_ALNUM = re.compile(r"[^A-Z0-9]")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def normalised_name(personal: ev.PersonalData) -> str:
    words: list[str] = []
    for part in (personal.given_name, personal.family_name, *personal.other_names):
        words += _NON_LETTER.sub(" ", _fold(part)).split()
    return " ".join(sorted(words))


def normalised_document(document: ev.IdentityDocument) -> str:
    number = _NON_ALNUM.sub("", _fold(document.number).upper())
    return f"{document.issuing_country}:{number}"


def identity_keys(personal: ev.PersonalData) -> list[str]:
    """The normalised strings that identify a person (before hashing)."""
    keys = []
    if personal.date_of_birth is not None:
        keys.append(f"name+dob|{normalised_name(personal)}|{personal.date_of_birth.isoformat()}")
    keys += [f"document|{normalised_document(d)}" for d in personal.documents]
    return keys


def identity_hashes(hmac_key: bytes, personal: ev.PersonalData) -> list[bytes]:
    return [
        hmac.new(hmac_key, k.encode(), hashlib.sha256).digest() for k in identity_keys(personal)
    ]
