"""Redis Streams adapter (``redis://``, ``rediss://``); see ``docs/redis.md``.

Modules: :mod:`.keys` (key layout, ID <-> offset), :mod:`.scripts` (the Lua that makes
each step atomic), :mod:`.client` (connection, options, error mapping), :mod:`.leases`
(the LeaseStore), :mod:`.streams` (per-partition read/commit/lag/trim), :mod:`.producer`,
:mod:`.consumer` and :mod:`.broker`.
"""

from spate.brokers.redis.broker import RedisBroker

__all__ = ["RedisBroker"]
