"""Outgoing email: rendered from templates, kept in the outbox, sent by SMTP when configured."""
