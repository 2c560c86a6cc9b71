"""The embedded broker on SQLite: ``local://PATH`` and ``memory://`` (DESIGN §5).

Modules, one idea each: :mod:`.storage` (database, schema, threads, wake-ups),
:mod:`.log` (topics, batches, offsets), :mod:`.leases`, :mod:`.consumer`,
:mod:`.producer`, :mod:`.retention`, and :mod:`.broker` which ties them together.
"""

from spate.brokers.local.broker import LocalBroker

__all__ = ["LocalBroker"]
