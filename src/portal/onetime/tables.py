from piccolo.columns import Integer, Serial, Timestamptz, Varchar
from piccolo.table import Table


class OneTimeKey(Table, tablename="one_time_key"):
    """A money form's one-time key, claimed in the same transaction as the form's effect.

    ``key`` is unique: a second submission of the same form (a double click, a
    browser retry, back and resubmit) cannot claim it again and is answered
    with ``result`` (what the first one produced, e.g. ``refund:12``). The
    claim commits or rolls back with the effect, so a refused form can be
    corrected and sent again with the same key.
    """

    id: Serial
    key = Varchar(length=64, unique=True, required=True)
    user_id = Integer(null=True, default=None)
    action = Varchar(length=40, required=True)
    result = Varchar(length=120, default="")
    created_at = Timestamptz(index=True)
