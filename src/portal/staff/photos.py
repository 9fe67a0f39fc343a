"""A therapist's photo: sniffed (never trusted by its name), size-capped, audited;
an initials avatar when there is none."""

from __future__ import annotations

from typing import Any

from portal import db
from portal.audit import service as audit
from portal.auth.service import (
    CurrentUser,
)
from portal.errors import Invalid
from portal.staff.tables import (
    TherapistPhoto,
)
from portal.staff.therapists import get_therapist_for
from portal.timeutil import utcnow

MAX_PHOTO_BYTES = 2 * 1024 * 1024
PHOTO_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WebP"}


# -- photo -------------------------------------------------------------------


def sniff_image(data: bytes) -> str | None:
    """The image type from its first bytes; the browser's claim is not trusted."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


async def set_photo(
    actor: CurrentUser, therapist_id: int, data: bytes, *, address: str = ""
) -> None:
    await get_therapist_for(actor, therapist_id, write=True)
    if not data:
        raise Invalid({"photo": "Choose an image file to upload."})
    if len(data) > MAX_PHOTO_BYTES:
        raise Invalid({"photo": f"The image is {len(data) / 1048576:.1f} MB; the limit is 2 MB."})
    content_type = sniff_image(data)
    if content_type is None:
        raise Invalid({"photo": "Upload a JPEG, PNG or WebP image."})
    now = utcnow()
    async with db.transaction():
        updated = (
            await TherapistPhoto.update(
                {
                    TherapistPhoto.content_type: content_type,
                    TherapistPhoto.data: data,
                    TherapistPhoto.updated_at: now,
                }
            )
            .where(TherapistPhoto.therapist == therapist_id)
            .returning(TherapistPhoto.id)
            .run()
        )
        if not updated:
            await TherapistPhoto.insert(
                TherapistPhoto(
                    therapist=therapist_id, content_type=content_type, data=data, updated_at=now
                )
            ).run()
        await audit.record(
            actor,
            "photo",
            "therapist",
            therapist_id,
            after={"photo": f"{PHOTO_TYPES[content_type]}, {len(data)} bytes"},
            address=address,
        )


async def remove_photo(actor: CurrentUser, therapist_id: int, *, address: str = "") -> bool:
    await get_therapist_for(actor, therapist_id, write=True)
    async with db.transaction():
        removed = (
            await TherapistPhoto.delete()
            .where(TherapistPhoto.therapist == therapist_id)
            .returning(TherapistPhoto.id)
            .run()
        )
        if removed:
            await audit.record(
                actor,
                "remove_photo",
                "therapist",
                therapist_id,
                before={"photo": "present"},
                after={"photo": None},
                address=address,
            )
    return bool(removed)


def initials_avatar(name: str) -> str:
    """A placeholder portrait: the initials on a tinted disc (SVG we write ourselves)."""
    from html import escape

    initials = "".join(part[0] for part in name.split()[:2] if part).upper() or "?"
    hue = sum(map(ord, name)) % 360
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 96 96" role="img">'
        f'<circle cx="48" cy="48" r="48" fill="hsl({hue} 35% 85%)"/>'
        f'<text x="48" y="60" font-family="sans-serif" font-size="34" font-weight="600" '
        f'text-anchor="middle" fill="hsl({hue} 40% 28%)">{escape(initials)}</text></svg>'
    )


async def get_photo(therapist_id: int) -> dict[str, Any] | None:
    return (
        await TherapistPhoto.select(
            TherapistPhoto.content_type, TherapistPhoto.data, TherapistPhoto.updated_at
        )
        .where(TherapistPhoto.therapist == therapist_id)
        .first()
        .run()
    )


async def has_photo(therapist_id: int) -> bool:
    return bool(await TherapistPhoto.exists().where(TherapistPhoto.therapist == therapist_id).run())
