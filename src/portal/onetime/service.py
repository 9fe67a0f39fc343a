"""One-time form keys.

Every money form (refund, buy, front-desk sale, complete, cancel, no-show)
renders a fresh random key in a hidden field. The service that applies the
form claims the key inside the same transaction as the form's effect:

* the first submission claims it, does its work and stores what it produced
  (``finish``), all in one commit;
* a repeat — a double click, a browser retry, back and resubmit — finds the key
  taken and gets the first result back instead of a second effect. Two copies
  arriving at once queue on the key's unique index (PostgreSQL waits for the
  first transaction; SQLite's immediate transaction serialises them);
* a submission that was refused (bad input) rolls its claim back with
  everything else, so the corrected form can be sent with the same key.
"""

from __future__ import annotations

import re
import secrets

from portal.errors import Invalid
from portal.onetime.tables import OneTimeKey
from portal.timeutil import utcnow

KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
FIELD = "request_key"


def new_key() -> str:
    """A fresh key for one rendering of a form."""
    return secrets.token_urlsafe(24)


def parse(raw: str | None) -> str | None:
    """The submitted key if it looks like one the portal issued, else None (no protection)."""
    return raw if raw and KEY_PATTERN.fullmatch(raw) else None


USED_ELSEWHERE = "This form was already used. Reload the page and enter it again."


async def claim(
    key: str | None, *, user_id: int | None, action: str, field: str = "form"
) -> str | None:
    """Claim ``key`` for this submission, inside the effect's transaction.

    Returns None when this submission is the first (go on, then :func:`finish`),
    or the first submission's result when the form was sent before. A key
    claimed by another user or for another action (a mixed-up or forged form)
    is refused on ``field``.
    """
    if key is None:
        return None
    inserted = (
        await OneTimeKey.insert(
            OneTimeKey(key=key, user_id=user_id, action=action, result="", created_at=utcnow())
        )
        .on_conflict(target=OneTimeKey.key, action="DO NOTHING")
        .returning(OneTimeKey.id)
        .run()
    )
    if inserted:
        return None
    row = (
        await OneTimeKey.select(OneTimeKey.user_id, OneTimeKey.action, OneTimeKey.result)
        .where(OneTimeKey.key == key)
        .first()
        .run()
    )
    if row is None or row["user_id"] != user_id or row["action"] != action:
        raise Invalid({field: USED_ELSEWHERE})
    return str(row["result"])


async def finish(key: str | None, result: str) -> None:
    """Store what the first submission produced (same transaction as its effect)."""
    if key is None:
        return
    await OneTimeKey.update({OneTimeKey.result: result[:120]}).where(OneTimeKey.key == key).run()


async def earlier_result(key: str | None, *, user_id: int | None, action: str) -> str | None:
    """What an earlier submission of ``key`` by ``user_id`` for ``action`` produced, if one
    finished: read before the checks its own effect would now fail (the same form sent
    twice answers as the first), outside the transaction :func:`claim` runs in."""
    if key is None:
        return None
    row = (
        await OneTimeKey.select(OneTimeKey.result)
        .where(
            (OneTimeKey.key == key)
            & (OneTimeKey.user_id == user_id)
            & (OneTimeKey.action == action)
            & (OneTimeKey.result != "")
        )
        .first()
        .run()
    )
    return str(row["result"]) if row else None
