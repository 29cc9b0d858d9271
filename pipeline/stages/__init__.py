"""The two stages of the stream as plain code (no Kafka, no Faust here), side by side:

- `rooms`: the room stage. Kafka messages of one input partition in; each event's outcome, room
  windows, raw-event rows and contributions for the creator stage out.
- `creators`: the creator stage. Contributions of every room partition in; creator windows out.

Both hand the worker a `pipeline.windows.checkpoint.Checkpoint`; `pipeline.runtime` makes it durable.
"""
