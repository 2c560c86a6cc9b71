"""Worker processes of one App on NATS, for the tests that kill, pause and restart them.

:class:`Cluster` is :class:`worker_processes.Workers` on the session's nats-server with
a 1 s lease ttl, so a dead or paused member loses its partitions in about a second,
and topic and group names of its own. Its handler traces the inputs each worker ran,
so a test can tell, from the ``pid`` of the answer stored, whose copy the broker kept.
What is NATS-specific here is how it reads the partition leases.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import spate
from spate.brokers.nats import NatsBroker
from spate.record import TopicPartition
from worker_processes import Workers

PARTITIONS = 4
LEASE_TTL_S = 1.0


class Cluster(Workers):
    """Worker processes of the fault App, with topic and group names of their own."""

    def __init__(
        self, folder: Path, nats_url: str, *, guarantee: str, delay_s: float, batch: int
    ) -> None:
        super().__init__(
            folder,
            f"{nats_url}?lease_ttl_s={LEASE_TTL_S}",
            app="natsfaults",
            partitions=PARTITIONS,
            guarantee=guarantee,
            delay_s=delay_s,
            batch=batch,
            trace=True,
        )

    async def _owners(self) -> dict[int, int]:
        now_ms = time.time_ns() // 1_000_000
        async with spate.connect(self.url) as broker:
            assert isinstance(broker, NatsBroker)
            owners: dict[int, int] = {}
            for p in range(PARTITIONS):
                lease = await broker.leases.lease(self.group, TopicPartition(self.inputs, p))
                if lease is not None and lease[0] and lease[2] > now_ms:
                    owners[p] = int(lease[0].split("-")[-2])
            return owners

    def owners(self) -> dict[int, int]:
        """partition -> pid of the member holding its unexpired lease."""
        return asyncio.run(self._owners())
