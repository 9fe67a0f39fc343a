"""Clients: profiles, sign-up and accounts, intake forms."""
