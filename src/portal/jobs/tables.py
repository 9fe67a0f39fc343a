from piccolo.columns import BigInt, Boolean, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class JobRun(Table, tablename="job_run"):
    """One run of a job: who asked (``trigger``), how it went, its progress.

    The queue itself (what is waiting, which worker holds what) is
    procrastinate's, in its own tables on PostgreSQL and in memory in embedded
    mode; this is the portal's record of what ran, kept on both engines for
    the jobs page. ``queue_job_id`` ties a run to the queue's job, so a job
    retried after its worker died marks the earlier run ``interrupted``.
    ``alerted``: this failure emailed the owners (once per failure streak).
    """

    id: Serial

    job = Varchar(length=40, required=True, index=True)
    trigger = Varchar(length=10, default="schedule")
    status = Varchar(length=12, default="running", index=True)
    scheduled_for = Timestamptz(null=True, default=None)
    queue_job_id = BigInt(null=True, default=None, index=True)
    attempt = Integer(default=1)
    requested_by = Integer(null=True, default=None)
    worker = Varchar(length=100, default="")
    started_at = Timestamptz()
    heartbeat_at = Timestamptz()
    finished_at = Timestamptz(null=True, default=None)
    duration_ms = Integer(null=True, default=None)
    done = Integer(default=0)
    total = Integer(default=0)
    step = Varchar(length=200, default="")
    summary = Text(default="")
    error = Text(default="")
    alerted = Boolean(default=False)
