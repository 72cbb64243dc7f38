"""ACLs end to end with confluent-kafka over SASL_SSL (SCRAM-SHA-512): an administrator (a super
user) and an application user `app` that starts with no ACL at all.

    python3 acl_scenario.py BOOTSTRAP CA_PEM ADMIN_PASSWORD APP_PASSWORD

Prints one line per step, `step: outcome`, where an outcome is what the client saw: `ok`, the
records read, or the name of the Kafka error (TOPIC_AUTHORIZATION_FAILED, ...). The test compares
the lines with what Kafka answers.
"""

import sys
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

BOOTSTRAP, CA, ADMIN_PASSWORD, APP_PASSWORD = sys.argv[1:5]


def config(user, password):
    return {
        "bootstrap.servers": BOOTSTRAP,
        "security.protocol": "sasl_ssl",
        "ssl.ca.location": CA,
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
    }


ADMIN = config("admin", ADMIN_PASSWORD)
APP = config("app", APP_PASSWORD)


def error_name(error):
    """The Kafka error's name, from a KafkaError or an exception that carries one."""
    if isinstance(error, KafkaException):
        error = error.args[0]
    name = getattr(error, "name", None)
    return name() if callable(name) else f"{type(error).__name__}: {error}"


def say(step, outcome):
    print(f"{step}: {outcome}", flush=True)


def produce(as_user, topic, value):
    producer = Producer({**as_user, "message.timeout.ms": 15000})
    outcome = []
    producer.produce(
        topic, value=value, on_delivery=lambda err, msg: outcome.append(err)
    )
    producer.flush(20)
    if not outcome:
        return "no delivery report"
    return "ok" if outcome[0] is None else error_name(outcome[0])


def consume(as_user, topic, group, wanted):
    """Reads `wanted` records from the start with `group`, or the first error."""
    consumer = Consumer(
        {**as_user, "group.id": group, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    values = []
    try:
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                return error_name(message.error())
            values.append(message.value().decode())
            if len(values) == wanted:
                consumer.commit(asynchronous=False)
                return " ".join(values)
        return f"read {len(values)} of {wanted}"
    finally:
        consumer.close()


def admin_call(future):
    try:
        future.result(20)
        return "ok"
    except Exception as error:  # the client's own error, reported by name
        return error_name(error)


def main():
    admin = AdminClient(ADMIN)
    app_admin = AdminClient(APP)
    created = admin.create_topics(
        [NewTopic(t, 1, 1) for t in ("orders", "payments")], operation_timeout=20
    )
    for future in created.values():
        future.result(20)
    say("admin creates orders and payments", "ok")

    say("app produces to orders", produce(APP, "orders", b"first"))

    def app_may(operation, resource_type, name, pattern=ResourcePatternType.LITERAL):
        return AclBinding(
            resource_type,
            name,
            pattern,
            "User:app",
            "*",
            operation,
            AclPermissionType.ALLOW,
        )

    grants = [
        app_may(AclOperation.WRITE, ResourceType.TOPIC, "orders"),
        app_may(AclOperation.READ, ResourceType.TOPIC, "orders"),
        app_may(AclOperation.READ, ResourceType.GROUP, "orders-", ResourcePatternType.PREFIXED),
    ]
    results = admin.create_acls(grants, request_timeout=20)
    say("admin grants app", " ".join(admin_call(f) for f in results.values()))

    say("app produces to orders", produce(APP, "orders", b"second"))
    say("app reads orders as orders-readers", consume(APP, "orders", "orders-readers", 1))
    say("app reads orders as other", consume(APP, "orders", f"other-{uuid.uuid4()}", 1))
    say("app produces to payments", produce(APP, "payments", b"x"))
    listed = app_admin.list_topics(timeout=20)
    say("app lists topics", " ".join(sorted(listed.topics)))
    say("app deletes orders", admin_call(app_admin.delete_topics(["orders"])["orders"]))
    sneaky = app_may(AclOperation.ALL, ResourceType.TOPIC, "payments")
    say(
        "app grants itself payments",
        admin_call(app_admin.create_acls([sneaky], request_timeout=20)[sneaky]),
    )

    described = admin.describe_acls(
        AclBindingFilter(
            ResourceType.ANY,
            None,
            ResourcePatternType.ANY,
            "User:app",
            None,
            AclOperation.ANY,
            AclPermissionType.ANY,
        ),
        request_timeout=20,
    ).result(20)
    say(
        "admin describes app's ACLs",
        " ".join(
            sorted(
                f"{b.restype.name}:{b.name}:{b.resource_pattern_type.name}:{b.operation.name}"
                for b in described
            )
        ),
    )
    revoke = AclBindingFilter(
        ResourceType.TOPIC,
        "orders",
        ResourcePatternType.LITERAL,
        "User:app",
        None,
        AclOperation.WRITE,
        AclPermissionType.ANY,
    )
    deleted = admin.delete_acls([revoke], request_timeout=20)[revoke].result(20)
    say("admin revokes app's WRITE", f"{len(deleted)} deleted")
    say("app produces to orders", produce(APP, "orders", b"third"))


if __name__ == "__main__":
    main()
