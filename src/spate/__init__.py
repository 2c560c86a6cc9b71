"""spate: real-time stream services on Kafka, NATS JetStream, Redis Streams or an
embedded broker — one program, every broker."""

from __future__ import annotations

from spate.app import App
from spate.brokers.base import (
    Broker,
    Capabilities,
    Consumer,
    PartitionLag,
    Producer,
    Reader,
    RebalanceListener,
    TopicInfo,
)
from spate.brokers.registry import connect
from spate.clock import Clock, ManualClock, SystemClock
from spate.config import Settings, load_settings
from spate.errors import (
    BrokerError,
    CapabilityError,
    ConfigError,
    DeserializationError,
    FencedError,
    RecoveryError,
    SpateError,
    StateError,
)
from spate.record import Headers, Record, TopicPartition
from spate.retry import Retry
from spate.serde import Serde
from spate.state.view import State
from spate.streams.dedup import Dedup
from spate.topic import Topic

__version__ = "0.1.0"

__all__ = [
    "App",
    "Broker",
    "BrokerError",
    "Capabilities",
    "CapabilityError",
    "Clock",
    "ConfigError",
    "Consumer",
    "Dedup",
    "DeserializationError",
    "FencedError",
    "Headers",
    "ManualClock",
    "PartitionLag",
    "Producer",
    "Reader",
    "RebalanceListener",
    "Record",
    "RecoveryError",
    "Retry",
    "Serde",
    "Settings",
    "SpateError",
    "State",
    "StateError",
    "SystemClock",
    "Topic",
    "TopicInfo",
    "TopicPartition",
    "__version__",
    "connect",
    "load_settings",
]
