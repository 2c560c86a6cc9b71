"""Testing kit: :class:`TestApp` drives an App on the in-memory broker; the server
fixtures start real brokers for integration tests."""

from spate.testing.app import TestApp

__all__ = ["TestApp"]
