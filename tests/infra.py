"""Where the tests find Kafka and PostgreSQL.

In order: explicit environment (KAFKA_BOOTSTRAP_SERVERS + GLV_TEST_DATABASE_URL),
else testcontainers when a Docker engine answers, else the local stack started by
`deploy/local/stack.sh start` (the only option on the project's machines, which
have a Docker client but no engine).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

LOCAL_BOOTSTRAP = "127.0.0.1:59092"
LOCAL_TEST_DB = "postgresql://glv_test:glv_test@127.0.0.1:55432/glv_test"


@dataclass(frozen=True)
class Infra:
    bootstrap: str
    admin_dsn: str  # a role that may CREATE DATABASE
    origin: str


def _docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        return bool(client.ping())
    except Exception:
        return False


def _reachable(host_port: str) -> bool:
    host, _, port = host_port.partition(":")
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=2):
        return True
    return False


@contextlib.contextmanager
def provide_infra() -> Iterator[Infra]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    dsn = os.environ.get("GLV_TEST_DATABASE_URL")
    if bootstrap and dsn:
        yield Infra(bootstrap, dsn, "environment")
        return
    if _docker_engine_answers():
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.postgres import PostgresContainer

        with (
            KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka,
            PostgresContainer("postgres:16", driver=None) as postgres,
        ):
            yield Infra(kafka.get_bootstrap_server(), postgres.get_connection_url(), "testcontainers")
        return
    url = urlparse(LOCAL_TEST_DB)
    if not (_reachable(LOCAL_BOOTSTRAP) and _reachable(f"{url.hostname}:{url.port}")):
        raise RuntimeError(
            "No Kafka/PostgreSQL for the tests: no Docker engine answers and the local stack is not "
            "running. Start it with `deploy/local/stack.sh start` (make test does), or set "
            "KAFKA_BOOTSTRAP_SERVERS and GLV_TEST_DATABASE_URL."
        )
    yield Infra(LOCAL_BOOTSTRAP, LOCAL_TEST_DB, "local stack")
