"""Clients' phone numbers as the staff's search finds them: the national digits.

A number is stored as typed (``client_profile.phone``) and beside it as its national
significant number (``client_profile.phone_national``), computed here whenever the phone
is written; a search turns what was typed into the same digits and looks them up by
equality (an index on both engines). "(503) 555-0142", "+1 503.555.0142" and
"5035550142" all become ``5035550142``.

A phone that is no number (:func:`phone_digits` gives None: fewer than six digits,
letters, something ``phonenumbers`` cannot read) is stored with no national digits
(NULL): the client is then not found by phone, only by name or email. A search with
fewer digits than a whole number (a local number, "555-0142" for "(503) 555-0142")
matches the end of the stored digits (``clients.service._phone_is``).
"""

from __future__ import annotations

import re

import phonenumbers

PHONE_RE = re.compile(r"^\+?[0-9()\-.\s]{6,40}$")
# A number typed without its country code is read as one of this region's.
PHONE_REGION = "US"


def phone_digits(text: str) -> str | None:
    """The national digits of a phone number typed any common way ("(503) 555-0142",
    "+1 503.555.0142", "5035550142"), or None when ``text`` is no phone number.

    What a search is turned into, and what is stored beside a client's phone
    (``client_profile.phone_national``), so the two compare by equality."""
    text = (text or "").strip()
    if sum(c.isdigit() for c in text) < 6 or not PHONE_RE.match(text):
        return None
    try:
        number = phonenumbers.parse(text, PHONE_REGION)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.national_significant_number(number) or None
