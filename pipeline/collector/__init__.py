"""The HTTP collector: phones and services POST events; it validates them with the event contract,
batches the accepted ones per (topic, room) and produces one Kafka message per batch."""
