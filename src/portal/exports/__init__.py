"""Data exports: the owner's archive of the whole chain, and a client's own data."""
