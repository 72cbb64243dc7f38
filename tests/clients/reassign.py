"""Moves partitions with kafka-python's admin client (AlterPartitionReassignments), then follows
the move with ListPartitionReassignments until none is left (up to LIMIT seconds). PLAN is
"PARTITION=R1,R2,R3;..." (the target replicas of each partition of TOPIC), or "PARTITION=cancel".
Prints one line per partition the broker answered ("partition P ok" or "partition P error NAME"),
one "moving N" line each time the number of partitions still moving changes, and "done" once
nothing of TOPIC moves. A controller that goes away while the move is followed is a "retrying"
line: the client connects to the cluster again, as an operator's tool would.

    python3 reassign.py BOOTSTRAP TOPIC PLAN [LIMIT]
"""

import sys
import time

from kafka import KafkaAdminClient, TopicPartition


def parse(topic, plan):
    moves = {}
    for entry in plan.split(";"):
        partition, replicas = entry.split("=")
        target = None if replicas == "cancel" else [int(r) for r in replicas.split(",")]
        moves[TopicPartition(topic, int(partition))] = target
    return moves


def main():
    bootstrap, topic, plan = sys.argv[1], sys.argv[2], sys.argv[3]
    limit = float(sys.argv[4]) if len(sys.argv) > 4 else 120.0
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fjord-reassign")
    answers = admin.alter_partition_reassignments(parse(topic, plan), timeout_ms=30000)
    for tp in sorted(answers, key=lambda tp: tp.partition):
        error = answers[tp]
        print(f"partition {tp.partition} " + ("ok" if error is None else f"error {error.__name__}"))
    sys.stdout.flush()
    deadline = time.monotonic() + limit
    last = None
    while True:
        try:
            listed = admin.list_partition_reassignments()
        except Exception as error:  # the controller it asked went away: ask the cluster again
            print(f"retrying after {type(error).__name__}")
            sys.stdout.flush()
            admin.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fjord-reassign")
            continue
        ongoing = [tp for tp in listed if tp.topic == topic]
        if len(ongoing) != last:
            last = len(ongoing)
            print(f"moving {last}")
            sys.stdout.flush()
        if not ongoing:
            print("done")
            break
        if time.monotonic() > deadline:
            print(f"timed out with {sorted(tp.partition for tp in ongoing)} still moving")
            break
        time.sleep(0.2)
    admin.close()


if __name__ == "__main__":
    main()
