from __future__ import annotations

from portal.exports import service as exports
from portal.jobs.tables import JobRun
from portal.settings import get_settings
from portal.timeutil import utcnow
from tests.matrix import Param, World


async def provide(world: World) -> dict[str, Param]:
    # Exports are chain-wide (owners only), each downloadable by the owner who asked.
    now = utcnow()
    owner = world.accounts["owner"]
    rows = (
        await JobRun.insert(
            JobRun(
                job=exports.JOB, status="succeeded", started_at=now, heartbeat_at=now,
                finished_at=now, requested_by=owner.id,
            )
        ).returning(JobRun.id).run()
    )  # fmt: skip
    run_id = int(rows[0]["id"])
    path = exports.archive_path(get_settings(), run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty ZIP
    return {"export_id": Param(own=run_id, other=run_id, scoped=False)}
