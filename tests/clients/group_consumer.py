"""A consumer-group worker for the group tests, for confluent-kafka, kafka-python or aiokafka. It
subscribes to one topic with auto-commit off (auto.offset.reset=earliest), prints each event as one
JSON line on stdout, commits synchronously after each poll, and on SIGTERM stops polling, closes
the consumer (leaving the group, except a static member) and exits 0, or 1 if closing takes over
CLOSE_TIMEOUT_S. A commit refused because of a rebalance is logged to stderr and the worker goes
on; any other error exits non-zero.

    python3 group_consumer.py --client confluent|kafka-python|aiokafka --bootstrap HOST:PORT
        --group G --topic T [--instance-id ID] [--assignor range|roundrobin|cooperative-sticky]
        [--session-timeout-ms 6000] [--heartbeat-interval-ms 1000] [--max-poll-records N]

Lines: {"event":"started"} once the consumer exists; {"event":"assigned","partitions":[...]} with
the full sorted assignment after every change (an eager rebalance first prints the revocation, so
the last line is the current assignment); {"event":"record","partition":P,"offset":O,"key":K,
"value":V}; {"event":"committed","offsets":{"P":NEXT}} once the commit succeeded; {"event":"closed"}.
"""

import argparse
import asyncio
import json
import signal
import sys
import threading

CLOSE_TIMEOUT_S = 30


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}, separators=(",", ":")), flush=True)


def text(data):
    return None if data is None else data.decode()


def process(records):
    """Prints (partition, offset, key, value) records; returns the offsets to commit: {partition: next}."""
    offsets = {}
    for partition, offset, key, value in records:
        emit("record", partition=partition, offset=offset, key=text(key), value=text(value))
        offsets[partition] = offset + 1
    return offsets


def committed(offsets):
    emit("committed", offsets={str(p): o for p, o in sorted(offsets.items())})


def refused(offsets, error):
    print(f"commit of {offsets} refused by a rebalance: {error!r}", file=sys.stderr, flush=True)


class Assignment:
    """The partitions owned, kept from eager (whole set) or incremental (changes only) callbacks."""

    def __init__(self):
        self.owned = set()

    def assigned(self, partitions):
        self.owned |= set(partitions)
        emit("assigned", partitions=sorted(self.owned))

    def revoked(self, partitions):
        partitions = set(partitions)
        if partitions:
            self.owned -= partitions
            emit("assigned", partitions=sorted(self.owned))


def listener(base, owned):
    """A rebalance listener of the client's class (kafka-python and aiokafka share the interface)."""

    class Listener(base):
        def on_partitions_revoked(self, revoked):
            owned.revoked(tp.partition for tp in revoked)

        def on_partitions_assigned(self, assigned):
            owned.assigned(tp.partition for tp in assigned)

    return Listener()


def run_confluent(args, stop):
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    config = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": args.session_timeout_ms,
        "heartbeat.interval.ms": args.heartbeat_interval_ms,
    }
    if args.instance_id:
        config["group.instance.id"] = args.instance_id
    if args.assignor:
        config["partition.assignment.strategy"] = args.assignor
    rebalance_errors = {KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                        KafkaError.UNKNOWN_MEMBER_ID, KafkaError._ASSIGNMENT_LOST}
    consumer = Consumer(config)
    emit("started")
    owned = Assignment()
    # Without on_lost, librdkafka reports lost partitions to on_revoke; the binding itself calls
    # (incremental_)assign/unassign after each callback.
    consumer.subscribe([args.topic], on_assign=lambda _, tps: owned.assigned(tp.partition for tp in tps),
                       on_revoke=lambda _, tps: owned.revoked(tp.partition for tp in tps))
    while not stop.is_set():
        records = []
        for msg in consumer.consume(args.max_poll_records or 500, 0.5):
            if msg.error():
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                print(f"consumer error: {msg.error()}", file=sys.stderr, flush=True)
                continue
            records.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
        offsets = process(records)
        if not offsets:
            continue
        try:
            result = consumer.commit(offsets=[TopicPartition(args.topic, p, o) for p, o in offsets.items()],
                                     asynchronous=False)
            error = next((tp.error for tp in result if tp.error), None)
        except KafkaException as e:
            error = e.args[0]
        if error is None:
            committed(offsets)
        elif error.code() in rebalance_errors:
            refused(offsets, error)
        else:
            raise KafkaException(error)
    closing = threading.Thread(target=consumer.close, daemon=True)
    closing.start()
    closing.join(CLOSE_TIMEOUT_S)
    if closing.is_alive():
        raise SystemExit(f"closing the consumer took over {CLOSE_TIMEOUT_S} s")


def run_kafka_python(args, stop):
    from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.errors import CommitFailedError, RebalanceInProgressError

    config = {}
    if args.assignor:
        config["partition_assignment_strategy"] = [{
            "range": RangePartitionAssignor,
            "roundrobin": RoundRobinPartitionAssignor,
            "cooperative-sticky": CooperativeStickyAssignor,
        }[args.assignor]]
    if args.max_poll_records:
        config["max_poll_records"] = args.max_poll_records
    consumer = KafkaConsumer(bootstrap_servers=args.bootstrap, group_id=args.group,
                             group_instance_id=args.instance_id, enable_auto_commit=False,
                             auto_offset_reset="earliest", session_timeout_ms=args.session_timeout_ms,
                             heartbeat_interval_ms=args.heartbeat_interval_ms, **config)
    emit("started")
    consumer.subscribe([args.topic], listener=listener(ConsumerRebalanceListener, Assignment()))
    while not stop.is_set():
        batches = consumer.poll(timeout_ms=500)
        offsets = process((tp.partition, r.offset, r.key, r.value) for tp, rs in batches.items() for r in rs)
        if not offsets:
            continue
        try:
            consumer.commit({TopicPartition(args.topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
            committed(offsets)
        except (CommitFailedError, RebalanceInProgressError) as e:
            refused(offsets, e)
    consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_S * 1000)


async def run_aiokafka(args):
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.errors import CommitFailedError, IllegalStateError

    config = {}
    if args.assignor == "cooperative-sticky":
        raise SystemExit("aiokafka has no cooperative rebalancing (only eager range, roundrobin, sticky)")
    if args.assignor:
        config["partition_assignment_strategy"] = [
            {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}[args.assignor]]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(bootstrap_servers=args.bootstrap, group_id=args.group,
                                group_instance_id=args.instance_id, enable_auto_commit=False,
                                auto_offset_reset="earliest", session_timeout_ms=args.session_timeout_ms,
                                heartbeat_interval_ms=args.heartbeat_interval_ms,
                                max_poll_records=args.max_poll_records, **config)
    emit("started")
    await consumer.start()
    consumer.subscribe([args.topic], listener=listener(ConsumerRebalanceListener, Assignment()))
    while not stop.is_set():
        try:
            # While a rebalance is in progress getmany waits for its end, whatever its timeout.
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 1)
        except TimeoutError:
            continue
        offsets = process((tp.partition, r.offset, r.key, r.value) for tp, rs in batches.items() for r in rs)
        if not offsets:
            continue
        try:
            await consumer.commit({TopicPartition(args.topic, p): o for p, o in offsets.items()})
            committed(offsets)
        except (CommitFailedError, IllegalStateError) as e:  # IllegalStateError: partition revoked meanwhile
            refused(offsets, e)
    try:
        await asyncio.wait_for(consumer.stop(), CLOSE_TIMEOUT_S)
    except TimeoutError:
        raise SystemExit(f"closing the consumer took over {CLOSE_TIMEOUT_S} s") from None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", required=True, choices=["confluent", "kafka-python", "aiokafka"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--instance-id")
    parser.add_argument("--assignor", choices=["range", "roundrobin", "cooperative-sticky"])
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--heartbeat-interval-ms", type=int, default=1000)
    parser.add_argument("--max-poll-records", type=int)
    args = parser.parse_args()
    if args.client == "aiokafka":
        asyncio.run(run_aiokafka(args))
    else:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        (run_confluent if args.client == "confluent" else run_kafka_python)(args, stop)
    emit("closed")


if __name__ == "__main__":
    main()
