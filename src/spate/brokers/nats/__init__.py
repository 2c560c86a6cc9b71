"""The NATS JetStream adapter (``nats://``, ``tls://``); see docs/nats.md.

Modules, one idea each: :mod:`.client` (connection options), :mod:`.errors` (nats-py
errors → spate errors), :mod:`.admin` (topics as streams), :mod:`.codec` (records as
messages), :mod:`.producer`, :mod:`.leases` (the group lease store), :mod:`.offsets`
(committed positions, lag, groups), :mod:`.consumer` and :mod:`.broker`.
"""

from spate.brokers.nats.broker import NatsBroker

__all__ = ["NatsBroker"]
