from piccolo.columns import Integer, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class OutboxMessage(Table, tablename="email_outbox"):
    """Every message the portal sends, whether or not an SMTP server delivered it.

    ``transport`` says how it went out: ``smtp`` (sent, or tried, through the
    configured server) or ``outbox`` (no SMTP server configured: the message
    is only kept here, where owners can read it). ``status`` is ``queued``
    until a delivery attempt ends in ``sent`` or ``failed`` (with ``error``).
    ``dedupe_key`` is unique, so a job that runs twice sends once.
    """

    id: Serial

    created_at = Timestamptz()
    to_address = Varchar(length=254, required=True, index=True)
    subject = Varchar(length=255, default="")
    template = Varchar(length=60, required=True)
    kind = Varchar(length=40, required=True, index=True)
    body_text = Text(default="")
    body_html = Text(default="")
    transport = Varchar(length=10, default="outbox")
    status = Varchar(length=10, default="queued", index=True)
    error = Text(default="")
    attempts = Integer(default=0)
    sent_at = Timestamptz(null=True, default=None)
    # When the last delivery attempt began: the outbox job waits longer after
    # each failed attempt before the next one (back-off).
    last_attempt_at = Timestamptz(null=True, default=None)
    message_id = Varchar(length=255, default="")
    dedupe_key = Varchar(length=200, null=True, default=None, unique=True)
    # Files sent with the message, as JSON: [{"filename", "content_type", "content"}]
    # (text content; a booking's calendar entry). Empty: none.
    attachments = Text(default="")
