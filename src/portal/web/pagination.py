"""Keyset pagination lives in :mod:`portal.pagination` (services page their lists);
this name stays for the code that imported it from here."""

from __future__ import annotations

from portal.pagination import MAX_BIGINT, Page, decode_cursor, encode_cursor, keyset_page

__all__ = ["MAX_BIGINT", "Page", "decode_cursor", "encode_cursor", "keyset_page"]
