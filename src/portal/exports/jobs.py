"""The owner's archive as a job run on request (``portal.jobs.catalog.requested``)."""

from __future__ import annotations

from portal.exports import service
from portal.jobs.catalog import JobSpec

JOBS = (
    JobSpec(
        name=service.JOB,
        label="Data export",
        description="Writes the whole chain's data as CSV files in one ZIP, for the owner "
        "who asked; kept 24 hours.",
        default_cron="",
        function=service.run_export,
    ),
)
