from __future__ import annotations

from portal.jobs.tables import JobRun
from portal.timeutil import utcnow
from tests.matrix import Param, World


async def provide(world: World) -> dict[str, Param]:
    # Jobs are chain-wide (owners only).
    now = utcnow()
    rows = (
        await JobRun.insert(
            JobRun(job="purge", status="succeeded", started_at=now, heartbeat_at=now)
        )
        .returning(JobRun.id)
        .run()
    )
    run_id = int(rows[0]["id"])
    return {
        "job": Param(own="purge", other="purge", scoped=False),
        "run_id": Param(own=run_id, other=run_id, scoped=False),
    }
