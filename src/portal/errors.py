"""Errors by meaning. Services raise these; the web layer decides what a person sees.

This module imports no framework (an import-linter contract keeps it so):
``portal.web.errors`` maps each class to a status and a page or JSON body —
:class:`NotFound` 404, :class:`Forbidden` 403, :class:`Conflict` 409,
:class:`Invalid` 422 — and controllers catch :class:`Invalid` to re-render
their forms with a message beside each field.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the rules refuse. ``detail`` is safe to show to the person who asked."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """The record does not exist, or it is not one the person may know about."""


class Forbidden(DomainError):
    """The person is known but their role or locations do not allow this."""


class Conflict(DomainError):
    """The record's current state does not allow this (already changed, taken, closed)."""


class Invalid(DomainError):
    """Bad input: a message per field; nothing has been saved."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


__all__ = ["Conflict", "DomainError", "Forbidden", "Invalid", "NotFound"]
