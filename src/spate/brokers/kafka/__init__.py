"""The Kafka adapter (confluent-kafka / librdkafka): ``kafka://host:port[,host:port…]``."""

from __future__ import annotations

from spate.brokers.kafka.broker import CAPABILITIES, KafkaBroker
from spate.brokers.kafka.consumer import KafkaConsumer
from spate.brokers.kafka.producer import KafkaProducer

__all__ = ["CAPABILITIES", "KafkaBroker", "KafkaConsumer", "KafkaProducer"]
