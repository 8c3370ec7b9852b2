"""Generate the compose stack and the Kubernetes manifests from the service registry.

    python -m glv_devtools.deploy_files            # write the files below (make deploy-files)
    python -m glv_devtools.deploy_files --check    # exit 1 and list stale, missing or extra files

The services come from `glv_schemas.topics.DEPLOYED_SERVICES` (name, package, HTTP port,
whether it loads the catalog); the database roles from `glv_schemas.topics.SERVICES`
(every planned service). What only some services need (settings, secrets, PostgreSQL
extensions, comments) is in EXTRAS below; a service without an entry there gets the
settings every service has. Generated, under deploy/:

    compose/compose.yaml, compose/initdb/10-glv.sql
    k8s/kustomization.yaml, namespace.yaml, configmap.yaml, secret.example.yaml,
    k8s/<name>-deployment.yaml, <name>-service.yaml, <name>-pdb.yaml per service,
    k8s/catalog-job.yaml (for the service that loads the catalog),
    k8s/admin-pod.example.yaml (a short-lived pod for the onboarding commands)

Compose is a development stack (GLV_ENVIRONMENT=development: plaintext Kafka and
PostgreSQL, a missing secret replaced by an ephemeral one); Kubernetes is production
(SASL_SSL with each service's own Kafka user, verify-full TLS to PostgreSQL against a
mounted CA, every secret from a Secret, refused when weak).

`--check` also checks the registry against the repository: one services/<name>/ with a
pyproject.toml per registered service and the reverse, each service among the planned
ones (it needs a dead-letter topic), and every secret compose requires listed in
compose/.env.example. Paths are relative to the repository root; `--root` points
elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from glv_schemas.generate import compare_files, report_check, report_written, write_files
from glv_schemas.topics import CATALOG, DEPLOYED_SERVICES, SERVICES, Service

ROOT = Path(__file__).resolve().parents[2]
REGENERATE_COMMAND = "make deploy-files"
COMPOSE_DIR = "deploy/compose"
K8S_DIR = "deploy/k8s"
ENV_EXAMPLE = f"{COMPOSE_DIR}/.env.example"
CATALOG_IN_CONTAINER = "/catalog/catalog.yaml"
# The image kustomization.yaml sets (and the admin pod, which is not part of it, names).
IMAGE_NAME = "registry.example.org/glv/glv-services"
IMAGE_TAG = "1.0.0"
# Kubernetes: where ConfigMap glv-ca (the CAs of Kafka's and PostgreSQL's server certificates) is mounted.
CA_DIR = "/etc/glv/tls"
KAFKA_CA_FILE = "kafka-ca.crt"
POSTGRES_CA_FILE = "postgres-ca.crt"

YAML_HEADER = (
    "# Generated from the service registry (glv_schemas.topics) by `make deploy-files`;\n"
    "# edit tools/glv_devtools/deploy_files.py, not this file.\n"
)
SQL_HEADER = YAML_HEADER.replace("# ", "-- ")


@dataclass(frozen=True)
class Setting:
    """A GLV_<NAME>_<key> setting beyond those every service has."""

    key: str
    # Non-secret: the value in the Kubernetes ConfigMap (and compose's default, unless
    # compose_value says otherwise). Secret: the placeholder in k8s/secret.example.yaml.
    value: str
    # Secrets come from the per-service Secret (Kubernetes) and must be set in .env
    # (compose), unless compose_value gives compose a default.
    secret: bool = False
    # Compose's default (compose runs in development mode): for a secret, the value used
    # when .env does not set it, which makes it optional there.
    compose_value: str | None = None
    # Kubernetes: the Secret may leave this key out (secretKeyRef optional).
    optional: bool = False
    # Secrets: what compose's error names when the variable is not set ("set the ...").
    what: str = ""
    # Comments above the setting, where it appears.
    compose_comment: str = ""
    configmap_comment: str = ""
    deployment_comment: str = ""
    secret_comment: str = ""


@dataclass(frozen=True)
class Extras:
    """What the deploy files need for one service beyond its registry entry."""

    settings: tuple[Setting, ...] = ()
    # PostgreSQL extension -> why; created in the service's database by compose's initdb.
    extensions: tuple[tuple[str, str], ...] = ()
    deployment_comment: str = ""
    service_comment: str = ""
    compose_comment: str = ""


EXTRAS: dict[str, Extras] = {
    "ticketing": Extras(
        deployment_comment=(
            "Ticketing: reads every onboarded portal's intake topic (glv.portal.<portal>.tickets, by\n"
            "pattern), decides, tracks each ticket, forwards what concerns a portal to its updates topic\n"
            "(glv.portal.<portal>.updates) and answers the portals' status API on 8081. Portals are\n"
            "onboarded with `glv-ticketing portal onboard ID` (admin-pod.example.yaml, README.md)."
        ),
        service_comment=(
            "The portals' status API (GET /v1/tickets/{id} and /v1/tickets/by-code/{code}, with the\n"
            "Bearer token `glv-ticketing portal onboard` issued) plus /healthz, /readyz and /metrics.\n"
            "Expose only /v1/tickets/ to portals (Ingress or Gateway with TLS, not included here)."
        ),
        compose_comment=(
            "Portals are onboarded in the ticketing container: their topics and status token (compose's\n"
            "Kafka has no users or ACLs), printed once as JSON, e.g.\n"
            "  docker compose -f deploy/compose/compose.yaml exec ticketing \\\n"
            "    glv-ticketing portal onboard sim-portal"
        ),
    ),
    "scheduler": Extras(
        settings=(
            Setting(
                "MEETING_PROVIDER",
                "jitsi",
                compose_comment=(
                    "Meeting links: jitsi or bigbluebutton. Development: an unset secret is replaced by an\n"
                    "ephemeral random one (links signed with it open no real meeting)."
                ),
                configmap_comment=(
                    "Meeting links: jitsi (Jitsi Meet with token auth) or bigbluebutton. Only the chosen\n"
                    "provider's secret is needed (Secret glv-scheduler); the scheduler refuses to start\n"
                    "without it."
                ),
            ),
            Setting("JITSI_DOMAIN", "meet.glv.example.go.id"),
            Setting("JITSI_APP_ID", "glv"),
            Setting(
                "JITSI_APP_SECRET",
                "CHANGE-ME-openssl-rand-hex-32",
                secret=True,
                what="the Jitsi app secret",
                compose_value="",
                optional=True,
                deployment_comment=(
                    "Only the chosen provider's secret is needed, so both keys are optional here; the\n"
                    "scheduler refuses to start when the chosen one is missing, a placeholder or short."
                ),
                secret_comment=(
                    "HS256 key shared with Jitsi Meet's token authentication (prosody's app_secret): at\n"
                    "least 32 random characters, e.g. `openssl rand -hex 32`. Needed when the provider is jitsi."
                ),
            ),
            Setting("BBB_URL", "https://bbb.glv.example.go.id/bigbluebutton"),
            Setting(
                "BBB_SECRET",
                "CHANGE-ME-bbb-conf-secret",
                secret=True,
                what="the BigBlueButton secret",
                compose_value="",
                optional=True,
                secret_comment=(
                    "BigBlueButton's shared secret (`bbb-conf --secret`), at least 32 characters. Needed\n"
                    "when the provider is bigbluebutton; leave the key out otherwise."
                ),
            ),
            Setting(
                "WEBHOOK_SECRETS",
                '["CHANGE-ME-openssl-rand-hex-32"]',
                secret=True,
                what="the webhook secrets",
                compose_value="[]",
                optional=True,
                deployment_comment=(
                    "Optional only for GLV_SCHEDULER_WEBHOOK_ENABLED=false: with the webhook on, production\n"
                    "refuses to start without a strong key."
                ),
                compose_comment=(
                    "JSON list of HMAC keys for POST /v1/webhooks/meetings; unset, the webhook answers 503."
                ),
                secret_comment=(
                    "JSON list of HMAC keys for POST /v1/webhooks/meetings, each at least 32 random\n"
                    "characters; list two while rotating. An empty list or a weak key refuses the start\n"
                    "(to run without the webhook, set GLV_SCHEDULER_WEBHOOK_ENABLED=false in glv-config and\n"
                    "leave the key out)."
                ),
            ),
            Setting(
                "PUBLIC_BASE_URL",
                "https://glv.example.go.id",
                compose_value="http://127.0.0.1:8082",
                configmap_comment=(
                    "Where officers reach the scheduler (through its Ingress): the base of the calendar-feed\n"
                    "URLs `glv-scheduler officer-token issue --purpose feed` prints; https:// in production."
                ),
            ),
        ),
        extensions=(
            ("btree_gist", "The scheduler's no-overlap constraints (EXCLUDE USING gist on office + time range)."),
        ),
        deployment_comment=(
            "The scheduler: office calendars, slot assignment, meeting links, session outcomes,\n"
            "the meeting platform's signed webhook (POST /v1/webhooks/meetings on 8082) and officers'\n"
            "agenda and calendar feed (/v1/officers/...).\n"
            "Two replicas are safe: they share Kafka partitions through the consumer group, and a\n"
            "double booking is impossible because bookings are protected by an exclusion\n"
            "constraint in PostgreSQL (a clash between replicas is retried, not committed)."
        ),
        service_comment=(
            "The meeting platform's signed webhook (POST /v1/webhooks/meetings), officers' agenda and\n"
            "calendar feed (GET /v1/officers/me/agenda, GET /v1/officers/feed/{token}.ics), plus\n"
            "/healthz, /readyz and /metrics. Expose only /v1/webhooks/ to the platform and /v1/officers/\n"
            "to officers (Ingress or Gateway with TLS, not included here; log no /v1/officers/feed/\n"
            "path: it holds a token); the rest is for the cluster."
        ),
        compose_comment=(
            "Officer commands run in the scheduler container (it has the settings), e.g.\n"
            "  docker compose -f deploy/compose/compose.yaml exec scheduler \\\n"
            "    glv-scheduler officer-token issue OFFICER --purpose agenda"
        ),
    ),
    "notifier": Extras(
        settings=(
            Setting(
                "SMTP_HOST",
                "smtp.glv.example.go.id",
                compose_value="host.docker.internal",
                configmap_comment="The office's mail submission server (the notifier sends e-mail through it).",
            ),
            Setting("SMTP_PORT", "587", compose_value="2525"),
            Setting("SMTP_STARTTLS", "true", compose_value="false"),
            Setting("SMTP_USERNAME", "glv-notifier", compose_value=""),
            Setting(
                "SMTP_PASSWORD",
                "CHANGE-ME-smtp-password",
                secret=True,
                what="the SMTP password",
                compose_value="",
                optional=True,
                secret_comment="The SMTP account's password (when SMTP_USERNAME is set), at least 32 characters.",
            ),
            Setting("MAIL_FROM", "GLV <no-reply@glv.example.go.id>"),
            Setting(
                "GATEWAY_URL",
                "https://sms-gateway.glv.example.go.id/v1/messages",
                compose_value="http://host.docker.internal:8099/v1/messages",
                configmap_comment=(
                    "The SMS/WhatsApp gateway: generic JSON POSTs, or the WhatsApp Cloud API\n"
                    "(GATEWAY_FORMAT=whatsapp_cloud, URL .../v17.0/<phone-number-id>/messages)."
                ),
            ),
            Setting("GATEWAY_FORMAT", "generic"),
            Setting("PHONE_CHANNEL", "whatsapp"),
            Setting(
                "GATEWAY_TOKEN",
                "CHANGE-ME-gateway-bearer-token",
                secret=True,
                what="the gateway's bearer token",
                compose_value="",
                secret_comment=(
                    "The gateway's bearer token (Authorization: Bearer ...), at least 32 characters;\n"
                    "the notifier refuses to start without it in production."
                ),
            ),
        ),
        deployment_comment=(
            "The notifier: tells and reminds each stakeholder (e-mail with a calendar invite, WhatsApp or\n"
            "SMS through the gateway), once per message, in Indonesian or English. It keeps the contact\n"
            "book (personal data) only while a ticket still needs messages. Templates: the package's,\n"
            "or an office's folder mounted and named by GLV_NOTIFIER_TEMPLATES_DIR."
        ),
        service_comment="/healthz, /readyz and /metrics only: nothing outside the cluster calls the notifier.",
        compose_comment=(
            "Development: mails and phone messages go to the local sinks run on the host, not to anyone:\n"
            "  python -m glv_devtools.mailsink --folder /tmp/glv-mail --port 2525\n"
            "  python -m glv_devtools.gatewaysink --port 8099"
        ),
    ),
    "archive": Extras(
        settings=(
            Setting(
                "STORE_URL",
                "s3://glv-archive/recordings",
                compose_value="file:///var/tmp/glv/archive",
                configmap_comment=(
                    "Where the encrypted recordings go: s3://bucket/prefix (AWS S3, MinIO, Ceph...) in\n"
                    "production; file:///path for one host. Give the bucket an AbortIncompleteMultipartUpload\n"
                    "lifecycle rule (a killed upload leaves invisible parts behind)."
                ),
                compose_comment="Development: a folder in the container, gone with it. Use S3 to keep anything.",
            ),
            Setting("S3_ENDPOINT", "https://s3.glv.example.go.id", compose_value=""),
            Setting("S3_REGION", "us-east-1"),
            Setting("S3_ACCESS_KEY_ID", "glv-archive", compose_value=""),
            Setting(
                "S3_SECRET_ACCESS_KEY",
                "CHANGE-ME-s3-secret-access-key",
                secret=True,
                what="the S3 secret access key",
                compose_value="",
                optional=True,
                secret_comment="The S3 user's secret key (leave out to use the pod's IAM role or AWS_* variables).",
            ),
            Setting(
                "KEYS",
                '{"kek-YYYYMMDD-xxxxxx": "CHANGE-ME-output-of-glv-archive-keys-new"}',
                secret=True,
                what="the key-encryption keys (glv-archive keys new)",
                compose_value="",
                secret_comment=(
                    "Key-encryption keys, JSON {id: key}, each from `glv-archive keys new`; keep old ids\n"
                    "listed until `glv-archive keys rewrap` has moved every object off them. Losing them\n"
                    "loses every recording: back them up apart from the database."
                ),
            ),
            Setting(
                "ACTIVE_KEY_ID",
                "kek-YYYYMMDD-xxxxxx",
                compose_value="",
                configmap_comment="The key new data keys are wrapped with (one of the ids in GLV_ARCHIVE_KEYS).",
            ),
            Setting(
                "LINK_SECRET",
                "CHANGE-ME-openssl-rand-hex-32",
                secret=True,
                what="the download links' HMAC key",
                compose_value="",
                secret_comment="HMAC key of the signed download links, at least 32 random characters.",
            ),
            Setting(
                "FETCH_ALLOWED_HOSTS",
                '["recordings.meet.glv.example.go.id"]',
                compose_value='["host.docker.internal"]',
                configmap_comment=(
                    'JSON list of the hosts recordings may be fetched from ("*.example.org" for\n'
                    "subdomains); https only, redirects only among them, no private addresses."
                ),
            ),
            Setting(
                "FETCH_HTTP_HOSTS",
                "[]",
                compose_value='["host.docker.internal"]',
                compose_comment="Development: the simulator on the host speaks plain http from a private address.",
            ),
            Setting("FETCH_PRIVATE_HOSTS", "[]", compose_value='["host.docker.internal"]'),
            Setting(
                "PUBLIC_BASE_URL",
                "https://archive.glv.example.go.id",
                compose_value="http://127.0.0.1:8084",
                configmap_comment="Where officers reach the archive's downloads: the base of the signed links.",
            ),
            Setting("RETENTION_DAYS", "1825"),
        ),
        deployment_comment=(
            "The archive: fetches each held session's video, audio and chat from the meeting platform,\n"
            "encrypts each object with its own data key (Tink streaming AEAD) wrapped by the key-encryption\n"
            "keys, stores it (S3), writes a readable session record, serves signed download links\n"
            "(/v1/archive/objects/... on 8084) with an append-only audit, and purges at retain-until."
        ),
        service_comment=(
            "Signed downloads (GET /v1/archive/objects/{id}?exp=&to=&sig=) plus /healthz, /readyz and\n"
            "/metrics. Expose only /v1/archive/ to officers (Ingress or Gateway with TLS, not included)."
        ),
        compose_comment=(
            "Links and erasure run in the archive container, e.g.\n"
            "  docker compose -f deploy/compose/compose.yaml exec archive glv-archive link OBJECT --to OFFICER"
        ),
    ),
}


def extras(service: Service) -> Extras:
    return EXTRAS.get(service.name, Extras())


def catalog_loader() -> Service | None:
    loaders = [s for s in DEPLOYED_SERVICES if s.loads_catalog]
    return loaders[0] if loaders else None


# ------------------------------------------------------------------ text helpers


def comment(text: str, indent: int = 0, marker: str = "#") -> str:
    """text as comment lines: each line as it is if it fits in 100 columns, else wrapped at 88."""
    if not text:
        return ""
    prefix = " " * indent + marker + " "
    lines: list[str] = []
    for line in text.split("\n"):
        if len(prefix + line) <= 100:
            lines.append(prefix + line)
        else:
            lines.extend(textwrap.wrap(line, width=88, initial_indent=prefix, subsequent_indent=prefix))
    return "\n".join(lines) + "\n"


def scalar(value: str) -> str:
    """value as a YAML string scalar: plain where YAML reads it back as that string, quoted otherwise."""
    try:
        plain = yaml.safe_load(f"k: {value}") == {"k": value}
    except yaml.YAMLError:
        plain = False
    if plain:
        return value
    if value.replace(".", "", 1).isdigit():
        return json.dumps(value)
    return "'" + value.replace("'", "''") + "'"


def shift(block: str, indent: int) -> str:
    """A block of YAML lines moved to start at `indent` columns."""
    return textwrap.indent(textwrap.dedent(block), " " * indent)


def enumerate_names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def env_name(service: Service, key: str) -> str:
    return f"{service.env_prefix}{key}"


def compose_database_url(service: Service) -> str:
    role = f"glv_{service.name}"
    password = f"${{GLV_{service.name.upper()}_DB_PASSWORD:-{role}}}"
    return f"postgresql://{role}:{password}@postgres:5432/{role}"


def compose_required(setting: Setting) -> str:
    return f"copy deploy/compose/.env.example to deploy/compose/.env and set {setting.what}"


def compose_requires(setting: Setting) -> bool:
    """Whether compose refuses to start without this setting in .env."""
    return setting.secret and setting.compose_value is None


def compose_env(service: Service, setting: Setting) -> str:
    variable = env_name(service, setting.key)
    if compose_requires(setting):
        return f"${{{variable}:?{compose_required(setting)}}}"
    default = setting.value if setting.compose_value is None else setting.compose_value
    return f"${{{variable}:-{default}}}"


# ------------------------------------------------------------------ compose


def compose_yaml() -> str:
    names = [s.name for s in DEPLOYED_SERVICES]
    loader = catalog_loader()
    parts = "single-node Kafka (KRaft), PostgreSQL, " + ("the catalog loader and " if loader else "")
    urls = ", ".join(f"{s.name} http://127.0.0.1:{s.http_port}" for s in DEPLOYED_SERVICES)
    out = YAML_HEADER
    out += comment(
        f"GLV on Docker Compose: {parts}the {enumerate_names(names)} services (one image, built from "
        "this repository; each container names its command). Needs Docker Compose v2 and deploy/compose/.env:"
    )
    out += (
        "#   cp deploy/compose/.env.example deploy/compose/.env     # then adjust it\n"
        "#   docker compose -f deploy/compose/compose.yaml up -d --build\n"
        f"#   docker compose -f deploy/compose/compose.yaml logs -f {' '.join(names)}\n"
        "#   docker compose -f deploy/compose/compose.yaml down        # add -v to drop the data\n"
    )
    out += comment(f"From the host: Kafka 127.0.0.1:59092, PostgreSQL 127.0.0.1:55432, {urls} (ports set in .env).")
    out += comment(
        "A development stack: the services run with GLV_ENVIRONMENT=development, which allows plaintext "
        "Kafka and PostgreSQL (this file has no TLS, SASL or ACLs) and replaces a secret left unset by an "
        "ephemeral random one. Production settings: deploy/k8s and docs/security.md."
    )
    for service in DEPLOYED_SERVICES:
        out += comment(extras(service).compose_comment)
    out += """name: glv

x-glv-image: &glv-image
  image: glv-services:dev
  build:
    context: ../..
    dockerfile: deploy/docker/Dockerfile

services:
  kafka:
    image: apache/kafka:4.1.1
    hostname: kafka
    environment:
      # The image writes server.properties from KAFKA_* variables (a.b_c -> KAFKA_A_B__C).
      CLUSTER_ID: ykYwQmD8TLaN5Jl7oVNlQg
      KAFKA_NODE_ID: 1
      KAFKA_PROCESS_ROLES: broker,controller
      # PLAINTEXT: containers on the compose network (kafka:9092); PLAINTEXT_HOST: the
      # host, through the published port, advertised as 127.0.0.1:<host port>.
      KAFKA_LISTENERS: PLAINTEXT://:9092,CONTROLLER://:9093,PLAINTEXT_HOST://:9094
      KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://kafka:9092,PLAINTEXT_HOST://127.0.0.1:${GLV_KAFKA_HOST_PORT:-59092}
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT
      KAFKA_INTER_BROKER_LISTENER_NAME: PLAINTEXT
      KAFKA_CONTROLLER_LISTENER_NAMES: CONTROLLER
      KAFKA_CONTROLLER_QUORUM_VOTERS: 1@kafka:9093
      KAFKA_LOG_DIRS: /var/lib/kafka/data
      KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: 0
      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: 1
      KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: 1
      KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: 1
      KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR: 1
      KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR: 1
      KAFKA_DEFAULT_REPLICATION_FACTOR: 1
      KAFKA_MIN_INSYNC_REPLICAS: 1
      # Topics come from the services' registry (created at start), never from a typo.
      KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false"
    ports:
      - "127.0.0.1:${GLV_KAFKA_HOST_PORT:-59092}:9094"
    volumes:
      - kafka-data:/var/lib/kafka/data
    healthcheck:
      test: ["CMD", "/opt/kafka/bin/kafka-broker-api-versions.sh", "--bootstrap-server", "localhost:9092"]
      interval: 10s
      timeout: 10s
      retries: 10
      start_period: 30s
    restart: unless-stopped

  postgres:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-postgres}
      # Read by initdb/10-glv.sql on first start (empty data directory) only.
"""
    for name in SERVICES:
        variable = f"GLV_{name.upper()}_DB_PASSWORD"
        out += f"      {variable}: ${{{variable}:-glv_{name}}}\n"
    out += """    ports:
      - "127.0.0.1:${GLV_PG_HOST_PORT:-55432}:5432"
    volumes:
      - pg-data:/var/lib/postgresql/data
      - ./initdb:/docker-entrypoint-initdb.d:ro
    healthcheck:
      # Over TCP: while the init scripts run, the entrypoint's temporary server listens
      # on the Unix socket only, so this stays unhealthy until the databases exist.
      test: ["CMD", "pg_isready", "--host=127.0.0.1", "--username=postgres", "--dbname=postgres"]
      interval: 5s
      timeout: 5s
      retries: 12
      start_period: 30s
    restart: unless-stopped
"""
    depends_on = """    depends_on:
      kafka:
        condition: service_healthy
      postgres:
        condition: service_healthy
"""
    if loader is not None:
        out += "\n" + comment(
            f"One-shot: stores deploy/catalog/catalog.yaml in the {loader.name}'s database (applying the "
            f"{loader.name}'s migrations if it has not yet) and publishes each office's entry on the "
            f"compacted {CATALOG.name} topic (creating the topics if needed); safe to run again.",
            indent=2,
        )
        out += "  # After editing the catalog: docker compose run --rm catalog-loader\n"
        out += f"""  catalog-loader:
    <<: *glv-image
    command: ["{loader.command}", "load-catalog", "{CATALOG_IN_CONTAINER}"]
    environment:
      GLV_ENVIRONMENT: development
      KAFKA_BOOTSTRAP_SERVERS: kafka:9092
      {env_name(loader, "DATABASE_URL")}: {compose_database_url(loader)}
      {env_name(loader, "TOPIC_REPLICATION")}: "1"
      {env_name(loader, "LOG_LEVEL")}: ${{{env_name(loader, "LOG_LEVEL")}:-INFO}}
    volumes:
      - ../catalog:/catalog:ro
{depends_on}    healthcheck:
      disable: true
    restart: "no"
"""
    for service in DEPLOYED_SERVICES:
        port = service.http_port
        out += f"""
  {service.name}:
    <<: *glv-image
    command: ["{service.command}", "run"]
    environment:
      GLV_ENVIRONMENT: development
      KAFKA_BOOTSTRAP_SERVERS: kafka:9092
      {env_name(service, "DATABASE_URL")}: {compose_database_url(service)}
      {env_name(service, "HTTP_HOST")}: 0.0.0.0
      {env_name(service, "HTTP_PORT")}: "{port}"
"""
        for setting in extras(service).settings:
            out += comment(setting.compose_comment, indent=6)
            out += f"      {env_name(service, setting.key)}: {compose_env(service, setting)}\n"
        probe = (
            "import urllib.request as u; "
            f"u.build_opener(u.ProxyHandler({{}})).open('http://127.0.0.1:{port}/healthz', timeout=4).close()"
        )
        out += f"""      {env_name(service, "TOPIC_REPLICATION")}: "1"
      {env_name(service, "LOG_LEVEL")}: ${{{env_name(service, "LOG_LEVEL")}:-INFO}}
    ports:
      - "127.0.0.1:${{GLV_{service.name.upper()}_HOST_PORT:-{port}}}:{port}"
{depends_on}    healthcheck:
      test: ["CMD", "python", "-c", {json.dumps(probe)}]
      interval: 15s
      timeout: 5s
      retries: 3
      # HTTP comes up after migrations, topic creation and the broker connection.
      start_period: 90s
    stop_grace_period: 40s
    restart: unless-stopped
"""
    out += """
volumes:
  kafka-data:
  pg-data:
"""
    return out


def initdb_sql() -> str:
    out = SQL_HEADER
    out += """-- One role and one database per GLV service, each database owned by its role (the
-- services apply their own migrations at start). Runs once, when the postgres
-- container initialises an empty data directory, as the superuser, through psql.
-- Passwords come from the container's environment (GLV_<SERVICE>_DB_PASSWORD, set
-- from deploy/compose/.env); the defaults are for development only. psql's \\getenv
-- leaves the variable unchanged when the environment variable is unset or empty.

\\set ON_ERROR_STOP on

"""
    out += "".join(f"\\set {name}_password glv_{name}\n" for name in SERVICES)
    out += "".join(f"\\getenv {name}_password GLV_{name.upper()}_DB_PASSWORD\n" for name in SERVICES)
    out += "\n" + "".join(f"CREATE ROLE glv_{name} LOGIN PASSWORD :'{name}_password';\n" for name in SERVICES)
    out += "\n" + "".join(f"CREATE DATABASE glv_{name} OWNER glv_{name};\n" for name in SERVICES)
    out += "\n-- Each service reaches its own database only (the owner keeps its rights).\n"
    out += "".join(f"REVOKE ALL ON DATABASE glv_{name} FROM PUBLIC;\n" for name in SERVICES)
    for service in DEPLOYED_SERVICES:
        for extension, why in extras(service).extensions:
            out += "\n" + comment(why, marker="--")
            out += f"\\connect glv_{service.name}\nCREATE EXTENSION IF NOT EXISTS {extension};\n"
    return out


# ------------------------------------------------------------------ Kubernetes


def kustomization_yaml() -> str:
    resources = ["namespace.yaml", "configmap.yaml"]
    for service in DEPLOYED_SERVICES:
        resources += [f"{service.name}-deployment.yaml", f"{service.name}-service.yaml", f"{service.name}-pdb.yaml"]
    if catalog_loader() is not None:
        resources.append("catalog-job.yaml")
    listed = "".join(f"  - {resource}\n" for resource in resources)
    return f"""{YAML_HEADER}# kubectl apply -k deploy/k8s     (see README.md for what must exist first)
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization

namespace: glv

labels:
  - pairs:
      app.kubernetes.io/part-of: glv
    # Selectors stay as written: they are immutable on existing Deployments.
    includeSelectors: false

resources:
{listed}  # Not listed on purpose: secret.example.yaml (secrets are created out of band), the
  # glv-ca ConfigMap (the CAs of your Kafka and PostgreSQL, see README.md),
  # admin-pod.example.yaml (applied only while onboarding) and the glv-catalog ConfigMap
  # (created from deploy/catalog/catalog.yaml, outside this kustomization root, which
  # kustomize refuses to read by default).

# Set the image your registry holds, e.g.
#   cd deploy/k8s && kustomize edit set image glv-services=registry.example.org/glv/glv-services:1.0.0
images:
  - name: glv-services
    newName: {IMAGE_NAME}
    newTag: "{IMAGE_TAG}"
"""


def namespace_yaml() -> str:
    return f"""{YAML_HEADER}apiVersion: v1
kind: Namespace
metadata:
  name: glv
"""


def configmap_yaml() -> str:
    out = f"""{YAML_HEADER}# Non-secret settings shared by the GLV services (each service reads its own
# GLV_<NAME>_ keys and ignores the others). Secrets live in per-service Secrets;
# see secret.example.yaml.
apiVersion: v1
kind: ConfigMap
metadata:
  name: glv-config
data:
  # Production, also the default: a service refuses to start on a plaintext transport or with
  # a missing or weak secret. Never "development" here.
  GLV_ENVIRONMENT: production
  # The Kafka cluster's bootstrap address: Strimzi's naming for a Kafka resource "glv" in
  # namespace "kafka" with a TLS listener on 9093 that authenticates with SCRAM-SHA-512.
  KAFKA_BOOTSTRAP_SERVERS: glv-kafka-bootstrap.kafka.svc:9093
  # TLS with SASL SCRAM-SHA-512; each service's user and password are in its Secret. The
  # broker's certificate is checked (chain and host name) against this CA, from ConfigMap glv-ca.
  KAFKA_SECURITY_PROTOCOL: SASL_SSL
  KAFKA_SSL_CAFILE: {CA_DIR}/{KAFKA_CA_FILE}
  # PostgreSQL over TLS, the server's certificate checked (chain and host name of the
  # database URL) against this CA, from ConfigMap glv-ca. An sslmode in the URL is ignored.
  GLV_DATABASE_SSL_MODE: verify-full
  GLV_DATABASE_SSL_ROOT_CERT: {CA_DIR}/{POSTGRES_CA_FILE}
  # Topics the services create at start get this many replicas (needs >= 3 brokers).
"""
    for service in DEPLOYED_SERVICES:
        out += f'  {env_name(service, "TOPIC_REPLICATION")}: "3"\n'
        out += f"  {env_name(service, 'LOG_LEVEL')}: INFO\n"
    for service in DEPLOYED_SERVICES:
        for setting in extras(service).settings:
            if not setting.secret:
                out += comment(setting.configmap_comment, indent=2)
                out += f"  {env_name(service, setting.key)}: {scalar(setting.value)}\n"
    return out


def secret_example_yaml() -> str:
    loader = catalog_loader()
    out = f"""{YAML_HEADER}# EXAMPLE ONLY: not part of kustomization.yaml, never commit real values.
# Copy it outside the repository, fill it in and apply it before the Deployments:
#   kubectl apply -f my-glv-secrets.yaml
# or create the same Secrets with `kubectl -n glv create secret generic glv-<name>
# --from-literal=KEY=VALUE ...`, one --from-literal per key below (see README.md).
# Every CHANGE-ME placeholder is refused: a service will not start with a Kafka password or
# a scheduler secret that is missing, looks like a placeholder or is under 32 characters;
# PostgreSQL refuses the placeholder in the database URLs, and the broker the admin's.
# The Kafka passwords come from `glv-kafka-access service NAME` (README.md), shown once.
# The database hosts are CloudNativePG's read-write Service for a Cluster "glv-postgres"
# in namespace "postgres"; percent-encode special characters in the passwords.

# Used by admin-pod.example.yaml only: a Kafka super user (Strimzi: listed in the Kafka
# resource's authorization.superUsers), for `glv-kafka-access` and `glv-ticketing portal`.
apiVersion: v1
kind: Secret
metadata:
  name: glv-admin
  namespace: glv
type: Opaque
stringData:
  GLV_ADMIN_KAFKA_SASL_USERNAME: glv-admin
  GLV_ADMIN_KAFKA_SASL_PASSWORD: CHANGE-ME
"""
    for service in DEPLOYED_SERVICES:
        role = f"glv_{service.name}"
        secrets = [s for s in extras(service).settings if s.secret]
        used_by = f"Used by Deployment glv-{service.name}"
        if service is loader:
            used_by += " (every key) and Job glv-catalog-load (the database URL and the Kafka user)"
        if service.name == "ticketing":
            used_by += " and admin-pod.example.yaml (portal onboarding works on its database)"
        extensions = [name for name, _ in extras(service).extensions]
        migrations = "the service migrates it at start"
        if extensions:
            migrations += f"; the migration creates the {', '.join(extensions)} extension, see README.md"
        out += f"""---
# {used_by}.
apiVersion: v1
kind: Secret
metadata:
  name: glv-{service.name}
  namespace: glv
type: Opaque
stringData:
"""
        out += comment(
            f"Role {role} owning database {role} ({migrations}). TLS comes from GLV_DATABASE_SSL_MODE in "
            "glv-config, not from the URL.",
            indent=2,
        )
        url = f"postgresql://{role}:CHANGE-ME@glv-postgres-rw.postgres.svc:5432/{role}"
        out += f"  {env_name(service, 'DATABASE_URL')}: {url}\n"
        out += comment(
            f"The service's own Kafka user: `glv-kafka-access service {service.name}` creates it with its ACLs "
            "and prints the password once.",
            indent=2,
        )
        out += f"  {env_name(service, 'KAFKA_SASL_USERNAME')}: glv-{service.name}\n"
        out += f"  {env_name(service, 'KAFKA_SASL_PASSWORD')}: CHANGE-ME\n"
        for setting in secrets:
            out += comment(setting.secret_comment, indent=2)
            out += f"  {env_name(service, setting.key)}: {scalar(setting.value)}\n"
    return out


POD_SECURITY = """      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
"""
CONTAINER_SECURITY = """          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            capabilities:
              drop: ["ALL"]
"""


def secret_ref(service: Service, key: str, *, optional: bool = False) -> str:
    variable = env_name(service, key)
    out = f"""            - name: {variable}
              valueFrom:
                secretKeyRef:
                  name: glv-{service.name}
                  key: {variable}
"""
    return out + ("                  optional: true\n" if optional else "")


def transport_refs(service: Service) -> str:
    """The service's database URL and its own Kafka user, from its Secret."""
    return "".join(secret_ref(service, key) for key in ("DATABASE_URL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"))


CA_MOUNT = f"""            - name: ca
              mountPath: {CA_DIR}
              readOnly: true
"""
CA_VOLUME = """        - name: ca
          configMap:
            name: glv-ca
"""


def labels(name: str, component: str, indent: int) -> str:
    pad = " " * indent
    return f"{pad}app.kubernetes.io/name: {name}\n{pad}app.kubernetes.io/component: {component}\n"


def deployment_yaml(service: Service) -> str:
    name, port = f"glv-{service.name}", service.http_port
    extra = extras(service)
    config = [s.key for s in extra.settings if not s.secret]
    out = YAML_HEADER + comment(extra.deployment_comment)
    out += f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels:
{labels(name, service.name, 4)}spec:
  replicas: 2
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app.kubernetes.io/name: {name}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
{labels(name, service.name, 8)}      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "{port}"
        prometheus.io/path: /metrics
    spec:
      # SIGTERM starts a drain of up to ~20 s (in-flight batches, then the outbox relay).
      terminationGracePeriodSeconds: 40
{POD_SECURITY}      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              app.kubernetes.io/name: {name}
      containers:
        - name: {service.name}
          # Replaced by kustomization.yaml's images: entry.
          image: glv-services
          imagePullPolicy: IfNotPresent
          command: ["{service.command}", "run"]
          ports:
            - name: http
              containerPort: {port}
              protocol: TCP
"""
    out += comment(
        f"GLV_ENVIRONMENT, the Kafka and PostgreSQL transport (SASL_SSL, verify-full, the CA files), "
        f"KAFKA_BOOTSTRAP_SERVERS and the {service.env_prefix}* settings that are not secret "
        f"({', '.join(['TOPIC_REPLICATION', 'LOG_LEVEL', *config])}).",
        indent=10,
    )
    out += f"""          envFrom:
            - configMapRef:
                name: glv-config
          env:
            - name: {env_name(service, "HTTP_HOST")}
              value: 0.0.0.0
            - name: {env_name(service, "HTTP_PORT")}
              value: "{port}"
            # From Secret glv-{service.name}: its database URL and its own Kafka user (glv-{service.name}).
{transport_refs(service)}"""
    for setting in extra.settings:
        if setting.secret:
            out += comment(setting.deployment_comment, indent=12)
            out += secret_ref(service, setting.key, optional=setting.optional)
    out += f"""          # The HTTP server starts only after migrations, topic creation and the broker
          # connection: the startup probe allows up to 3 minutes for that.
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 36
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          # /readyz checks the database (2 s) and the broker (3 s) in turn.
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: 5
            timeoutSeconds: 6
            failureThreshold: 3
          resources:
            requests:
              cpu: 100m
              memory: 256Mi
            limits:
              cpu: "1"
              memory: 512Mi
{CONTAINER_SECURITY}          volumeMounts:
            - name: tmp
              mountPath: /tmp
{CA_MOUNT}      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 16Mi
{CA_VOLUME}"""
    return out


def service_yaml(service: Service) -> str:
    name = f"glv-{service.name}"
    return f"""{YAML_HEADER}{comment(extras(service).service_comment)}apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels:
{labels(name, service.name, 4)}spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: {name}
  ports:
    - name: http
      port: {service.http_port}
      targetPort: http
      protocol: TCP
"""


def pdb_yaml(service: Service) -> str:
    name = f"glv-{service.name}"
    return f"""{YAML_HEADER}apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {name}
  labels:
{labels(name, service.name, 4)}spec:
  minAvailable: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: {name}
"""


def catalog_job_yaml(loader: Service) -> str:
    readers = enumerate_names([c for c in CATALOG.consumers])
    out = YAML_HEADER + comment(
        f"Loads the office catalog: `{loader.command} load-catalog` stores it in the {loader.name}'s "
        f"database (applying the {loader.name}'s migrations if the Deployment has not yet; replicas "
        f"and this Job take turns on a lock) and publishes each office's entry on the compacted "
        f"{CATALOG.name} topic (creating the topics if needed), which {readers} reads."
    )
    out += f"""# Reads ConfigMap glv-catalog, created from deploy/catalog/catalog.yaml (see README.md).
# Loading again is harmless (entries are keyed by office code). A Job's pod
# template is immutable: to run it again, delete it and apply again:
#   kubectl -n glv delete job glv-catalog-load --ignore-not-found && kubectl apply -k deploy/k8s
apiVersion: batch/v1
kind: Job
metadata:
  name: glv-catalog-load
  labels:
{labels("glv-catalog-load", "catalog", 4)}spec:
  backoffLimit: 6
  activeDeadlineSeconds: 600
  ttlSecondsAfterFinished: 86400
  template:
    metadata:
      labels:
{labels("glv-catalog-load", "catalog", 8)}    spec:
      restartPolicy: Never
{POD_SECURITY}      containers:
        - name: load-catalog
          # Replaced by kustomization.yaml's images: entry.
          image: glv-services
          imagePullPolicy: IfNotPresent
          command: ["{loader.command}", "load-catalog", "{CATALOG_IN_CONTAINER}"]
          # The transport settings, KAFKA_BOOTSTRAP_SERVERS, {env_name(loader, "TOPIC_REPLICATION")} and log level.
          envFrom:
            - configMapRef:
                name: glv-config
          # The {loader.name}'s database URL and Kafka user; its other secrets are not needed to load the catalog.
          env:
{transport_refs(loader)}          resources:
            requests:
              cpu: 50m
              memory: 128Mi
            limits:
              cpu: 500m
              memory: 256Mi
{CONTAINER_SECURITY}          volumeMounts:
            - name: catalog
              mountPath: /catalog
              readOnly: true
            - name: tmp
              mountPath: /tmp
{CA_MOUNT}      volumes:
        - name: catalog
          configMap:
            name: glv-catalog
        - name: tmp
          emptyDir:
            sizeLimit: 16Mi
{CA_VOLUME}"""
    return out


def admin_pod_yaml() -> str:
    """A short-lived pod from which an operator runs the onboarding commands with `kubectl exec`."""
    ticketing = next((s for s in DEPLOYED_SERVICES if s.name == "ticketing"), None)
    ticketing_env = ""
    if ticketing is not None:
        ticketing_env = """        # Portal onboarding works on ticketing's database (status tokens) with ticketing's
        # settings; optional, so that the pod also starts before that Secret exists (to
        # create the services' Kafka users first).
        - secretRef:
            name: glv-ticketing
            optional: true
"""
    return f"""{YAML_HEADER}# EXAMPLE ONLY: not part of kustomization.yaml. A pod that only sleeps (an hour at most),
# with the Kafka super user of Secret glv-admin, for the commands that manage Kafka users,
# ACLs and portals. Run them with `kubectl exec`: what they print (new passwords and
# tokens, shown once) then goes to your terminal only. A Job's output would stay in its
# pod's log, which the cluster may ship to a log store.
#   kubectl apply -f deploy/k8s/admin-pod.example.yaml
#   kubectl -n glv wait --for=condition=Ready pod/glv-admin
#   kubectl -n glv exec glv-admin -- glv-kafka-access service ticketing
#   kubectl -n glv exec glv-admin -- glv-ticketing portal onboard portal-lelang
#   kubectl -n glv delete pod glv-admin
# See README.md (Onboarding) for the order of the steps.
apiVersion: v1
kind: Pod
metadata:
  name: glv-admin
  namespace: glv
  labels:
{labels("glv-admin", "admin", 4)}spec:
  restartPolicy: Never
  activeDeadlineSeconds: 3600
{shift(POD_SECURITY, 2)}  containers:
    - name: admin
      # The image kustomization.yaml sets for the services.
      image: {IMAGE_NAME}:{IMAGE_TAG}
      imagePullPolicy: IfNotPresent
      command: ["sleep", "3600"]
      envFrom:
        # GLV_ENVIRONMENT, the transport settings and KAFKA_BOOTSTRAP_SERVERS.
        - configMapRef:
            name: glv-config
        # GLV_ADMIN_KAFKA_SASL_USERNAME / _PASSWORD.
        - secretRef:
            name: glv-admin
{ticketing_env}      env:
        # The same super user for glv-deadletters (GLV_KAFKA_SASL_*): replaying a portal's
        # intake dead letters writes to its intake topic, which no service may.
        - name: GLV_KAFKA_SASL_USERNAME
          valueFrom:
            secretKeyRef:
              name: glv-admin
              key: GLV_ADMIN_KAFKA_SASL_USERNAME
        - name: GLV_KAFKA_SASL_PASSWORD
          valueFrom:
            secretKeyRef:
              name: glv-admin
              key: GLV_ADMIN_KAFKA_SASL_PASSWORD
      resources:
        requests:
          cpu: 50m
          memory: 128Mi
        limits:
          cpu: 500m
          memory: 256Mi
{shift(CONTAINER_SECURITY, 6)}      volumeMounts:
        - name: tmp
          mountPath: /tmp
{shift(CA_MOUNT, 8)}  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
{shift(CA_VOLUME, 4)}"""


# ------------------------------------------------------------------ files, check


def generated_files() -> dict[str, str]:
    """Every generated file: its path relative to the repository root, and its content."""
    files = {
        f"{COMPOSE_DIR}/compose.yaml": compose_yaml(),
        f"{COMPOSE_DIR}/initdb/10-glv.sql": initdb_sql(),
        f"{K8S_DIR}/kustomization.yaml": kustomization_yaml(),
        f"{K8S_DIR}/namespace.yaml": namespace_yaml(),
        f"{K8S_DIR}/configmap.yaml": configmap_yaml(),
        f"{K8S_DIR}/secret.example.yaml": secret_example_yaml(),
        f"{K8S_DIR}/admin-pod.example.yaml": admin_pod_yaml(),
    }
    for service in DEPLOYED_SERVICES:
        files[f"{K8S_DIR}/{service.name}-deployment.yaml"] = deployment_yaml(service)
        files[f"{K8S_DIR}/{service.name}-service.yaml"] = service_yaml(service)
        files[f"{K8S_DIR}/{service.name}-pdb.yaml"] = pdb_yaml(service)
    loader = catalog_loader()
    if loader is not None:
        files[f"{K8S_DIR}/catalog-job.yaml"] = catalog_job_yaml(loader)
    return files


def _extra_files(root: Path, expected: dict[str, str]) -> Iterator[str]:
    # The generator owns every manifest in deploy/k8s/: one it does not produce is left over.
    directory = root / K8S_DIR
    if directory.is_dir():
        for path in sorted(directory.glob("*.yaml")):
            relative = path.relative_to(root).as_posix()
            if relative not in expected:
                yield relative


def registry_problems(root: Path) -> list[str]:
    """Where the registry and the repository disagree."""
    problems = []
    packaged = {path.parent.name for path in (root / "services").glob("*/pyproject.toml")}
    registered = {service.name for service in DEPLOYED_SERVICES}
    problems += [
        f"unregistered: services/{name}/ has a pyproject.toml but no entry in glv_schemas.topics.DEPLOYED_SERVICES"
        for name in sorted(packaged - registered)
    ]
    for service in DEPLOYED_SERVICES:
        if service.name not in packaged:
            problems.append(f"no package: services/{service.name}/pyproject.toml is missing")
        elif not (root / "services" / service.name / service.package / "__init__.py").is_file():
            problems.append(f"no package: services/{service.name}/{service.package}/__init__.py is missing")
        if service.name not in SERVICES:
            problems.append(f"not planned: {service.name} is not in glv_schemas.topics.SERVICES (its dead letters)")
    ports = [service.http_port for service in DEPLOYED_SERVICES]
    if len(set(ports)) != len(ports):
        problems.append(f"duplicate HTTP ports in DEPLOYED_SERVICES: {sorted(ports)}")
    if len(registered) != len(DEPLOYED_SERVICES):
        problems.append("duplicate names in DEPLOYED_SERVICES")
    if sum(service.loads_catalog for service in DEPLOYED_SERVICES) > 1:
        problems.append("more than one service has loads_catalog=True")
    problems += [f"unknown service in EXTRAS: {name}" for name in sorted(set(EXTRAS) - registered)]
    env_example = root / ENV_EXAMPLE
    listed = env_example.read_text(encoding="utf-8") if env_example.is_file() else ""
    for service in DEPLOYED_SERVICES:
        for setting in extras(service).settings:
            variable = env_name(service, setting.key)
            if compose_requires(setting) and f"\n{variable}=" not in f"\n{listed}":
                problems.append(f"not in {ENV_EXAMPLE}: {variable}, which compose requires")
    return problems


def check(root: Path = ROOT) -> list[str]:
    """What is out of date under root: 'stale: path', 'missing: path', 'extra: path' and registry problems."""
    expected = generated_files()
    return compare_files(root, expected, _extra_files(root, expected)) + registry_problems(root)


def write(root: Path = ROOT) -> list[str]:
    """Write every generated file that differs and remove leftovers; returns what changed."""
    expected = generated_files()
    return write_files(root, expected, _extra_files(root, expected))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m glv_devtools.deploy_files", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is not current")
    parser.add_argument("--root", type=Path, default=ROOT, help=f"repository root (default: {ROOT})")
    args = parser.parse_args(argv)
    root: Path = args.root

    if args.check:
        return report_check(check(root), f"deploy files under {root}", REGENERATE_COMMAND)
    report_written(write(root))
    problems = registry_problems(root)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
