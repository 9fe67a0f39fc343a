from tests.email.smtpd import smtp_server  # noqa: F401  (fixture)
