"""Sets a cluster-wide dynamic broker config (the BROKER resource named "", Kafka's
--entity-default) through one broker and prints what every broker of the cluster describes for
it, each broker answering from its own copy of the metadata: one line per broker,
"broker ID KEY=VALUE SOURCE", once all of them show VALUE (or after 20 s).

    python3 broker_configs.py BOOTSTRAP KEY VALUE VIA_ID ID,ID,...

kafka-python's admin API takes only broker ids as BROKER resource names, so the requests are
built with its request helpers and sent to the chosen broker with its connection manager.
"""

import sys
import time

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType


def main():
    bootstrap, key, value, via = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ids = [int(i) for i in sys.argv[5].split(",")]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fjord-broker-configs")

    def send(request, node):
        async def call():
            return await admin._manager.send(request, node_id=node)
        return admin._manager.run(call)

    cluster_wide = ConfigResource(ConfigResourceType.BROKER, "", configs={key: value})
    request = admin._alter_configs_request([cluster_wide], incremental=True)
    for result in send(request, via).responses:
        if result.error_code != 0:
            sys.exit(f"altering {key} failed: {result.error_code} {result.error_message}")

    deadline = time.monotonic() + 20
    while True:
        seen = {}
        for node in ids:
            describe = admin._describe_configs_request(
                [ConfigResource(ConfigResourceType.BROKER, str(node))])
            described = admin._describe_configs_process_responses([send(describe, node)], "all")
            config = described["broker"][str(node)].get(key, {})
            seen[node] = (config.get("value"), config.get("config_source"))
        if all(v == value for v, _ in seen.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for node, (v, source) in sorted(seen.items()):
        print(f"broker {node} {key}={v} {source}")
    admin.close()


if __name__ == "__main__":
    main()
