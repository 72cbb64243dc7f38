"""One client scenario against a running Fjord broker, for confluent-kafka, kafka-python or
aiokafka: create a 3-partition topic with the client's admin API, produce keyed records with
headers, explicit timestamps, null and empty values in every codec the client supports, read every
partition back by assignment, and check per-partition order, that a key always lands in the same
partition, and keys, values, headers and timestamps. Then describe the topic's configs and delete
it; kafka-python also creates a topic and partitions with manual replica assignments. Exits non-zero with the failed assertion on any difference.

    python3 python_clients.py CLIENT BOOTSTRAP
"""

import asyncio
import sys
import time

# Current timestamps: records far in the past would be due for deletion by retention.ms.
T0 = int(time.time() * 1000)
PARTITIONS = 3
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def records_for(codec):
    out = []
    for i in range(12):
        key = f"key-{i % 5}".encode()
        if i % 6 == 4:
            value = None
        elif i % 6 == 5:
            value = b""
        else:
            value = f"{codec}-{i}".encode()
        headers = [("codec", codec.encode()), ("index", str(i).encode())]
        out.append((key, value, headers, T0 + 1000 * CODECS.index(codec) + i))
    return out


def check(sent, stored, partition_of):
    """sent: list of (partition, offset, key, value, headers, ts); stored: {partition: [(offset, key, value, headers, ts)]}"""
    for partition, records in stored.items():
        offsets = [r[0] for r in records]
        assert offsets == list(range(len(records))), f"partition {partition} offsets {offsets}"
    by_place = {(p, r[0]): r for p, rs in stored.items() for r in rs}
    assert len(by_place) == len(sent), f"{len(by_place)} stored, {len(sent)} sent"
    for partition, offset, key, value, headers, ts in sent:
        got = by_place[(partition, offset)]
        assert got[1] == key, (partition, offset, got[1], key)
        assert got[2] == value, (partition, offset, got[2], value)
        assert [(k, bytes(v)) for k, v in got[3]] == headers, (got[3], headers)
        assert got[4] == ts, (got[4], ts)
        assert partition_of.setdefault(key, partition) == partition, f"key {key} in two partitions"
    # Per key, the order of values is the order they were sent.
    for key in {s[2] for s in sent}:
        sent_values = [s[3] for s in sorted((s for s in sent if s[2] == key), key=lambda s: s[5])]
        stored_values = [by_place[(s[0], s[1])][2] for s in sorted((s for s in sent if s[2] == key), key=lambda s: (s[0], s[1]))]
        assert sent_values == stored_values, (key, sent_values, stored_values)


def run_confluent(bootstrap, topic):
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(30)
    sent = []
    for codec in CODECS:
        producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5,
                             "enable.idempotence": True})
        for key, value, headers, ts in records_for(codec):
            def delivered(err, msg, key=key, value=value, headers=headers, ts=ts):
                assert err is None, err
                sent.append((msg.partition(), msg.offset(), key, value, headers, ts))
            producer.produce(topic, key=key, value=value, headers=headers, timestamp=ts, on_delivery=delivered)
        assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fjord-verify", "enable.auto.commit": False})
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    stored = {p: [] for p in range(PARTITIONS)}
    deadline = time.time() + 60
    while any(len(stored[p]) < ends[p] for p in stored):
        assert time.time() < deadline, "consuming timed out"
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue  # group coordination errors: there are no consumer groups yet
        stored[msg.partition()].append((msg.offset(), msg.key(), msg.value(), msg.headers() or [], msg.timestamp()[1]))
    consumer.close()
    check(sent, stored, {})
    configs = admin.describe_configs([ConfigResource("topic", topic)])
    entries = list(configs.values())[0].result(30)
    assert entries["retention.ms"].value == "604800000", entries["retention.ms"]
    admin.delete_topics([topic])[topic].result(30)
    assert topic not in admin.list_topics(timeout=10).topics
    return len(sent)


def run_kafka_python(bootstrap, topic):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    sent = []
    for codec in CODECS:
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                 compression_type=None if codec == "none" else codec)
        futures = [(producer.send(topic, key=k, value=v, headers=h, timestamp_ms=ts), k, v, h, ts)
                   for k, v, h, ts in records_for(codec)]
        producer.flush(30)
        for future, k, v, h, ts in futures:
            md = future.get(timeout=30)
            sent.append((md.partition, md.offset, k, v, h, ts))
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    ends = consumer.end_offsets(tps)
    stored = {p: [] for p in range(PARTITIONS)}
    deadline = time.time() + 60
    while any(len(stored[tp.partition]) < ends[tp] for tp in tps):
        assert time.time() < deadline, "consuming timed out"
        for tp, batch in consumer.poll(timeout_ms=500).items():
            for r in batch:
                stored[tp.partition].append((r.offset, r.key, r.value, list(r.headers), r.timestamp))
    consumer.close()
    check(sent, stored, {})
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    entry = result["topic"][topic]["retention.ms"]
    assert entry["value"] == "604800000" and entry["config_source"] == "DEFAULT_CONFIG", entry
    admin.delete_topics([topic])
    kafka_python_manual_assignment(admin, topic)
    admin.close()
    return len(sent)


def kafka_python_manual_assignment(admin, topic):
    """CreateTopics and CreatePartitions with manual replica assignments on the broker (node 1):
    placed as asked; an assignment naming an unregistered broker is refused and creates nothing."""
    from kafka.admin import NewPartitions, NewTopic
    from kafka.errors import InvalidReplicationAssignmentError

    placed = f"{topic}-placed"
    admin.create_topics([NewTopic(placed, replica_assignments={0: [1], 1: [1]})])
    admin.create_partitions({placed: NewPartitions(total_count=3, new_assignments=[[1]])})
    nowhere = f"{topic}-nowhere"
    try:
        admin.create_topics([NewTopic(nowhere, replica_assignments={0: [1, 99]})])
        raise AssertionError("an assignment naming broker 99, which is not registered, was accepted")
    except InvalidReplicationAssignmentError as error:
        assert "broker 99, but no such broker is registered" in str(error), error
    described = {t["name"]: t for t in admin.describe_topics([placed])}
    partitions = sorted((p["partition_index"], p["leader_id"], p["replica_nodes"])
                        for p in described[placed]["partitions"])
    assert partitions == [(0, 1, [1]), (1, 1, [1]), (2, 1, [1])], partitions
    assert nowhere not in admin.list_topics(), admin.list_topics()
    admin.delete_topics([placed])


async def run_aiokafka_async(bootstrap, topic):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    sent = []
    for codec in CODECS:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                    compression_type=None if codec == "none" else codec)
        await producer.start()
        try:
            pending = [(await producer.send(topic, key=k, value=v, headers=h, timestamp_ms=ts), k, v, h, ts)
                       for k, v, h, ts in records_for(codec)]
            for future, k, v, h, ts in pending:
                md = await future
                sent.append((md.partition, md.offset, k, v, h, ts))
        finally:
            await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    stored = {p: [] for p in range(PARTITIONS)}
    deadline = time.time() + 60
    while any(len(stored[tp.partition]) < ends[tp] for tp in tps):
        assert time.time() < deadline, "consuming timed out"
        for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
            for r in batch:
                stored[tp.partition].append((r.offset, r.key, r.value, list(r.headers), r.timestamp))
    await consumer.stop()
    check(sent, stored, {})
    await admin.delete_topics([topic])
    await admin.close()
    return len(sent)


def main():
    client, bootstrap = sys.argv[1], sys.argv[2]
    topic = f"python-{client}"
    runners = {
        "confluent-kafka": run_confluent,
        "kafka-python": run_kafka_python,
        "aiokafka": lambda b, t: asyncio.run(run_aiokafka_async(b, t)),
    }
    count = runners[client](bootstrap, topic)
    print(f"ok {client}: {count} records produced and read back")


if __name__ == "__main__":
    main()
