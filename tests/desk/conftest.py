from tests.bookings.conftest import clinic  # noqa: F401  (fixture)
from tests.email.smtpd import smtp_server  # noqa: F401  (fixture)
