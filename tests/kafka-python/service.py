"""The process helpers kafka-python's integration fixtures import from `test/service.py`, which its
PyPI source package does not ship. Fjord runs the suite against a broker it started itself (the
fixtures' external-broker mode, KAFKA_URI), so only the external half is needed: it starts and
stops nothing. Spawning a broker is refused, so a fixture that would start a Java Kafka fails
loudly instead of waiting for one."""


class ExternalService:
    def __init__(self, host, port):
        self.host = host
        self.port = port

    def open(self):
        pass

    def close(self):
        pass

    def start(self):
        pass

    def stop(self):
        pass

    def join(self, timeout=None):
        pass

    def dump_logs(self):
        pass

    def wait_for(self, pattern, timeout=30):
        return True


class SpawnedService:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("Fjord runs kafka-python's suite against an external broker (KAFKA_URI) only")
