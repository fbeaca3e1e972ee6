"""Kafka messaging: where dataset requests come from and where status events go."""

from dataset_assets.messaging.kafka import KafkaResource, status_event

__all__ = ["KafkaResource", "status_event"]
