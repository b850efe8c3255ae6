#!/usr/bin/env python3
"""Read the inbox topic with Confluent's own client and Avro deserializer.

An outside check of the inbox contract for e2e/external_test.go
(TestExternalClients): confluent-kafka's Consumer (librdkafka) reads the
topic with isolation.level=read_committed in a consumer group of its own,
from the earliest offsets, and confluent_kafka.schema_registry's
AvroDeserializer decodes each value (Confluent wire format: magic byte 0,
4-byte schema id, Avro binary) with the writer schema fetched from the
registry by its id. Nothing of this project's code is used.

Prints one JSON object per record on stdout, in partition/offset order:

  {"topic": ..., "partition": 3, "offset": 0, "key": "user-00001",
   "delivery_id": ..., "user_id": ..., "business_id": ..., "campaign_id": ...,
   "sent_at": 1748779200000, "text": ..., "cta_label": null, "cta_url": null}

sent_at is epoch milliseconds. It stops once every partition of the topic has
been read to its end (the last stable offset for read_committed), and exits
non-zero on any error: a value that does not decode, a consumer error, or no
end reached within --timeout seconds. A summary goes to stderr.

Usage: decode_inbox.py --brokers HOST:PORT[,...] --registry URL --topic inbox
       [--group NAME] [--timeout 60]
"""

import argparse
import datetime
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def millis(v):
    """timestamp-millis as epoch milliseconds: fastavro gives an aware datetime."""
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        delta = v - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return int(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", default="")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    group = args.group or "decode-inbox-" + uuid.uuid4().hex
    deser = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": group,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "enable.metrics.push": False,  # no KIP-714 telemetry chatter on stderr
    })
    deadline = time.monotonic() + args.timeout
    try:
        # Every partition of the topic must reach its end, not only the
        # ones assigned first.
        md = consumer.list_topics(args.topic, timeout=max(1.0, args.timeout))
        tmd = md.topics.get(args.topic)
        if tmd is None or tmd.error is not None or not tmd.partitions:
            raise SystemExit("topic %s: %s" % (args.topic, tmd.error if tmd else "not found"))
        pending = set(tmd.partitions)
        consumer.subscribe([args.topic])
        out = []
        while pending:
            if time.monotonic() > deadline:
                raise SystemExit("timed out after %.0fs: partitions %s not read to their end (%d records so far)"
                                 % (args.timeout, sorted(pending), len(out)))
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    continue
                raise KafkaException(err)
            ctx = SerializationContext(msg.topic(), MessageField.VALUE, msg.headers())
            where = "%s/%d@%d" % (msg.topic(), msg.partition(), msg.offset())
            try:
                v = deser(msg.value(), ctx)
            except Exception as e:  # noqa: BLE001: name the record, then fail
                raise SystemExit("%s: value does not decode: %r" % (where, e))
            if not isinstance(v, dict):
                raise SystemExit("%s: decoded to %r, want a record" % (where, v))
            key = msg.key()
            m = v.get("message") or {}
            out.append({
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": None if key is None else key.decode("utf-8"),
                "delivery_id": v["delivery_id"],
                "user_id": v["user_id"],
                "business_id": v["business_id"],
                "campaign_id": v["campaign_id"],
                "sent_at": millis(v["sent_at"]),
                "text": m.get("text"),
                "cta_label": m.get("cta_label"),
                "cta_url": m.get("cta_url"),
            })
    finally:
        consumer.close()
    out.sort(key=lambda r: (r["partition"], r["offset"]))
    for r in out:
        sys.stdout.write(json.dumps(r, sort_keys=True) + "\n")
    sys.stdout.flush()
    print("decode_inbox: %d records from %d partitions of %s (group %s, read_committed)"
          % (len(out), len(tmd.partitions), args.topic, group), file=sys.stderr)


if __name__ == "__main__":
    main()
