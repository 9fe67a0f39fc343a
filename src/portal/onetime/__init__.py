"""One-time form keys: a form sent twice has one effect, and the repeat gets the first result."""
