"""Consumer-group administration for the group tests through confluent-kafka's AdminClient. Each
subcommand prints one JSON document on stdout; every request has a timeout.

    python3 group_admin.py list --bootstrap B
        {"groups":[{"group":G,"state":S,"type":T,"simple":BOOL}],"errors":[ERROR]}
    python3 group_admin.py describe --bootstrap B --group G
        {"group":G,"state":S,"type":T,"simple":BOOL,"protocol_type":P,"assignor":A,"coordinator":ID,
         "members":[{"member_id":M,"client_id":C,"host":H,"group_instance_id":I,"assignment":{"topic":[partitions]}}]}
    python3 group_admin.py offsets --bootstrap B --group G
        {"topic":{"partition":offset}}
    python3 group_admin.py delete --bootstrap B --group G
        {"group":G,"deleted":true} or {"group":G,"deleted":false,"error":ERROR}

ERROR is {"code":N,"name":S,"message":S}. describe_consumer_groups does not expose the protocol type,
so describe takes it from the older list_groups (DescribeGroups too). delete exits 0 whatever the
broker answered, so that the caller can assert the error; the other subcommands exit non-zero with
the error on stderr.
"""

import argparse
import json
import warnings

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException
from confluent_kafka.admin import AdminClient

TIMEOUT = 10  # seconds, for each request
WAIT = TIMEOUT + 5  # for its result: the request's own timeout error comes first


def error_json(error):
    """A KafkaError, or the one a KafkaException carries, as JSON."""
    if isinstance(error, KafkaException):
        error = error.args[0]
    return {"code": error.code(), "name": error.name(), "message": error.str()}


def list_groups(admin, _):
    result = admin.list_consumer_groups(request_timeout=TIMEOUT).result(WAIT)
    groups = [{"group": g.group_id, "state": g.state.name, "type": g.type.name, "simple": g.is_simple_consumer_group}
              for g in result.valid]
    return {"groups": sorted(groups, key=lambda g: g["group"]), "errors": [error_json(e) for e in result.errors]}


def describe(admin, group):
    desc = admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result(WAIT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        protocol_types = [g.protocol_type for g in admin.list_groups(group, timeout=TIMEOUT)]
    members = []
    for m in desc.members:
        assignment = {}
        for tp in m.assignment.topic_partitions:
            assignment.setdefault(tp.topic, []).append(tp.partition)
        members.append({"member_id": m.member_id, "client_id": m.client_id, "host": m.host,
                        "group_instance_id": m.group_instance_id,
                        "assignment": {t: sorted(ps) for t, ps in assignment.items()}})
    return {"group": desc.group_id, "state": desc.state.name, "type": desc.type.name,
            "simple": desc.is_simple_consumer_group, "protocol_type": protocol_types[0] if protocol_types else None,
            "assignor": desc.partition_assignor, "coordinator": desc.coordinator.id,
            "members": sorted(members, key=lambda m: m["member_id"])}


def offsets(admin, group):
    request = [ConsumerGroupTopicPartitions(group)]
    result = admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT)[group].result(WAIT)
    out = {}
    for tp in result.topic_partitions:
        if tp.error:
            raise KafkaException(tp.error)
        out.setdefault(tp.topic, {})[str(tp.partition)] = tp.offset
    return out


def delete(admin, group):
    try:
        admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result(WAIT)
    except KafkaException as e:
        return {"group": group, "deleted": False, "error": error_json(e)}
    return {"group": group, "deleted": True}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["list", "describe", "offsets", "delete"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group")
    args = parser.parse_args()
    if args.command != "list" and not args.group:
        parser.error(f"{args.command} needs --group")
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    run = {"list": list_groups, "describe": describe, "offsets": offsets, "delete": delete}[args.command]
    print(json.dumps(run(admin, args.group)))


if __name__ == "__main__":
    main()
