from __future__ import annotations

from portal.imports.tables import ImportBatch
from portal.timeutil import utcnow
from tests.matrix import Param, World


async def _batch(location_id: int) -> int:
    rows = (
        await ImportBatch.insert(
            ImportBatch(
                kind="clients", location=location_id, filename="clients.csv",
                file_hash=f"matrix-{location_id}", status="complete", created_at=utcnow(),
            )
        )
        .returning(ImportBatch.id)
        .run()
    )  # fmt: skip
    return int(rows[0]["id"])


async def provide(world: World) -> dict[str, Param]:
    # An import belongs to the location it was imported into.
    return {
        "batch_id": Param(
            own=await _batch(world.own_location), other=await _batch(world.other_location)
        ),
    }
