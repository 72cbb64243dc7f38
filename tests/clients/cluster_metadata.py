"""Prints the cluster as kafka-python's admin client sees it through BOOTSTRAP: one line per
broker ("broker ID RACK"), the controller ("controller ID"), and one line per partition of TOPIC
("partition P leader L replicas R1,R2").

    python3 cluster_metadata.py BOOTSTRAP TOPIC
"""

import sys

from kafka import KafkaAdminClient


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fjord-cluster-metadata")
    cluster = admin.describe_cluster()
    for broker in sorted(cluster["brokers"], key=lambda b: b["broker_id"]):
        print(f"broker {broker['broker_id']} {broker['rack']}")
    print(f"controller {cluster['controller_id']}")
    for described in admin.describe_topics([topic]):
        for partition in sorted(described["partitions"], key=lambda p: p["partition_index"]):
            replicas = ",".join(str(r) for r in partition["replica_nodes"])
            print(
                f"partition {partition['partition_index']} leader {partition['leader_id']} "
                f"replicas {replicas}"
            )
    admin.close()


if __name__ == "__main__":
    main()
