"""Real protocol servers on loopback for integration tests: the local stack's own servers."""

import json
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from dataset_assets.messaging import KafkaResource
from dataset_assets.stack import free_port, start_mongodb, start_s3_server, start_tansu, stop

QUIET = {"log_level": 0}


def read_topic(kafka: KafkaResource, topic: str) -> list[dict[str, Any]]:
    """Every message on `topic`, read to the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.servers,
            "group.id": "test-reader",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            **QUIET,
        }
    )
    parts = consumer.list_topics(topic, timeout=5).topics[topic].partitions
    consumer.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in parts])
    messages, at_end = [], set()
    while len(at_end) < len(parts):
        message = consumer.poll(5)
        assert message is not None, f"{topic} did not reach its end"
        if message.error():
            assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
            at_end.add(message.partition())
            continue
        messages.append(
            {
                "key": message.key().decode(),
                "value": json.loads(message.value()),
                "partition": message.partition(),
                "offset": message.offset(),
            }
        )
    consumer.close()
    return messages


__all__ = [
    "QUIET",
    "free_port",
    "read_topic",
    "start_mongodb",
    "start_s3_server",
    "start_tansu",
    "stop",
]
