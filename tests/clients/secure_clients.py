"""One client against a secured Fjord listener (TLS, mutual TLS, SASL over TLS or plaintext):
confluent-kafka (librdkafka) or kafka-python produces five keyed records to a topic and reads
them back by assignment, checking keys, values and offsets. Prints "ok" and the offsets; on a
failure (a refused handshake, an unknown CA, a missing client certificate, a failed login)
prints the client's error to stderr and exits 1, within the given timeout.

    python3 secure_clients.py CLIENT BOOTSTRAP TOPIC [--ca CA_PEM] [--cert CERT_PEM --key KEY_PEM]
        [--sasl MECHANISM --user USER --password PASSWORD] [--oauth-token TOKEN]
        [--timeout SECONDS]

With --ca the connection uses TLS; with --sasl it logs in (SASL_SSL, or SASL_PLAINTEXT without
--ca); with --sasl OAUTHBEARER the client's token callback hands out --oauth-token.
"""

import argparse
import sys
import time


def confluent(args, records):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    config = {"bootstrap.servers": args.bootstrap, "security.protocol": protocol(args).lower()}
    if args.ca:
        config["ssl.ca.location"] = args.ca
        # The test CA's certificates name localhost and 127.0.0.1.
        config["ssl.endpoint.identification.algorithm"] = "https"
    if args.sasl == "OAUTHBEARER":
        config["sasl.mechanisms"] = args.sasl
        # librdkafka asks again at 80 % of the lifetime given here.
        config["oauth_cb"] = lambda _: (args.oauth_token, time.time() + 300)
    elif args.sasl:
        config["sasl.mechanisms"] = args.sasl
        config["sasl.username"] = args.user
        config["sasl.password"] = args.password
    if args.cert:
        config["ssl.certificate.location"] = args.cert
        config["ssl.key.location"] = args.key
    errors = []
    config["error_cb"] = lambda error: errors.append(str(error))
    producer = Producer({**config, "message.timeout.ms": int(args.timeout * 1000), "acks": "all"})
    delivered = []

    def report(error, message):
        if error is not None:
            errors.append(str(error))
        else:
            delivered.append((message.key(), message.value(), message.offset()))

    for key, value in records:
        producer.produce(args.topic, key=key, value=value, partition=0, on_delivery=report)
    producer.flush(args.timeout + 5)
    if len(delivered) != len(records):
        raise RuntimeError(f"delivered {len(delivered)} of {len(records)}: {errors}")
    consumer = Consumer({**config, "group.id": "secure-clients", "enable.auto.commit": False})
    consumer.assign([TopicPartition(args.topic, 0, 0)])
    read = []
    deadline = time.time() + args.timeout
    while len(read) < len(records) and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            raise KafkaException(message.error())
        read.append((message.key(), message.value(), message.offset()))
    consumer.close()
    return delivered, read


def kafka_python(args, records):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    config = {
        "bootstrap_servers": args.bootstrap,
        "security_protocol": protocol(args),
        "request_timeout_ms": int(args.timeout * 1000),
    }
    if args.ca:
        config["ssl_cafile"] = args.ca
    if args.sasl == "OAUTHBEARER":
        from kafka.net.sasl.oauth import AbstractTokenProvider

        class Token(AbstractTokenProvider):
            def token(self):
                return args.oauth_token

        config["sasl_mechanism"] = args.sasl
        config["sasl_oauth_token_provider"] = Token()
    elif args.sasl:
        config["sasl_mechanism"] = args.sasl
        config["sasl_plain_username"] = args.user
        config["sasl_plain_password"] = args.password
    if args.cert:
        config["ssl_certfile"] = args.cert
        config["ssl_keyfile"] = args.key
    producer = KafkaProducer(acks="all", max_block_ms=int(args.timeout * 1000), **config)
    delivered = []
    for key, value in records:
        metadata = producer.send(args.topic, key=key, value=value, partition=0).get(args.timeout)
        delivered.append((key, value, metadata.offset))
    producer.close()
    consumer = KafkaConsumer(enable_auto_commit=False, **config)
    partition = TopicPartition(args.topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, 0)
    read = []
    deadline = time.time() + args.timeout
    while len(read) < len(records) and time.time() < deadline:
        for messages in consumer.poll(timeout_ms=500).values():
            read.extend((m.key, m.value, m.offset) for m in messages)
    consumer.close()
    return delivered, read


def protocol(args):
    """Kafka's name for the listener's security protocol."""
    if args.sasl:
        return "SASL_SSL" if args.ca else "SASL_PLAINTEXT"
    return "SSL" if args.ca else "PLAINTEXT"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=["confluent-kafka", "kafka-python"])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--ca")
    parser.add_argument("--sasl")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--oauth-token")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    records = [(f"key-{i}".encode(), f"{args.client}-{i}".encode()) for i in range(5)]
    run = confluent if args.client == "confluent-kafka" else kafka_python
    try:
        delivered, read = run(args, records)
    except Exception as error:  # the client's own error, for the test to match
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
    base = delivered[0][2]
    assert [o for _, _, o in delivered] == list(range(base, base + len(records))), delivered
    mine = [r for r in read if r[2] >= base][: len(records)]
    assert mine == delivered, (mine, delivered)
    print("ok", " ".join(str(o) for _, _, o in delivered))


if __name__ == "__main__":
    main()
