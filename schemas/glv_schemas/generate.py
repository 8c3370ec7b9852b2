"""Generate the checked-in contract files from the models, and check that they are current.

    python -m glv_schemas.generate            # write jsonschema/*.json and asyncapi.yaml
    python -m glv_schemas.generate --check    # exit 1 and list stale, missing or extra files
    python -m glv_schemas.generate --freeze   # snapshot event types that have no snapshot yet

Paths are relative to the directory that holds the `glv_schemas` package (`schemas/` in
the repository), whatever the current directory is; `--root` points elsewhere.

The compatibility snapshots (`compat/v<N>/<event type>.json`) are written only by
`--freeze`, and only for event types that have none: they are what readers of a
released version were built against, so regenerating them would defeat their purpose.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from glv_schemas.envelope import CONTENT_TYPE, REQUIRED_HEADERS, SPEC_VERSION
from glv_schemas.events import ALL_EVENTS, EventModel
from glv_schemas.topics import (
    DEAD_LETTER_TOPICS,
    EVENT_TOPICS,
    PORTAL_ID_PATTERN,
    PORTAL_PLACEHOLDER,
    PORTAL_TICKETS,
    Topic,
)

JsonObject = dict[str, Any]

ROOT = Path(__file__).resolve().parent.parent
JSONSCHEMA_DIR = "jsonschema"
ASYNCAPI_FILE = "asyncapi.yaml"
COMPAT_DIR = "compat"
EXAMPLES_DIR = "examples"

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# A URN rather than a made-up web address: the files are self-contained (every $ref
# is internal), so the id only has to be absolute and unique.
SCHEMA_ID_PREFIX = "urn:glv:schema:"
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
LOCAL_BOOTSTRAP = "127.0.0.1:59092"
LOCAL_SECURE_BOOTSTRAP = "127.0.0.1:59094"
REGENERATE_COMMAND = "python -m glv_schemas.generate"

# CloudEvents 1.0, Kafka protocol binding, binary content mode: attribute -> header.
CLOUDEVENT_HEADERS: dict[str, JsonObject] = {
    "ce_specversion": {
        "type": "string",
        "const": SPEC_VERSION,
        "description": "CloudEvents spec version; always 1.0.",
    },
    "ce_id": {
        "type": "string",
        "minLength": 1,
        "description": (
            "Unique id of this event within its source (a UUID is recommended). Consumers record it to "
            "ignore redeliveries, so a retried send of the same event must reuse its id."
        ),
    },
    "ce_source": {
        "type": "string",
        "minLength": 1,
        "format": "uri-reference",
        "description": (
            "URI-reference naming the producer, e.g. /portals/portal-lelang; GLV services use /glv/<service>."
        ),
    },
    "ce_type": {
        "type": "string",
        "pattern": r"^glv\.[A-Z][A-Za-z0-9]*\.v[1-9][0-9]*$",
        "description": "The event type, glv.<Name>.v<N>; it says which schema the value follows.",
    },
    "ce_time": {
        "type": "string",
        "format": "date-time",
        "description": "When the event happened: an RFC 3339 instant in UTC, e.g. 2026-11-30T01:30:00Z.",
    },
    "ce_subject": {
        "type": "string",
        "description": "What the event is about: the ticket id (as the Kafka key); the office code on glv.catalog.",
    },
    "content-type": {
        "type": "string",
        "const": CONTENT_TYPE,
        "description": "Media type of the Kafka value (the event data): always application/json, UTF-8.",
    },
    "traceparent": {
        "type": "string",
        "pattern": r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        "description": "W3C Trace Context traceparent, carried from the producer to every consumer's logs.",
    },
}

# What a service adds when it gives up on a message and moves it to its dead-letter
# topic; the message's own key, value and headers are kept as they were. The names are
# glv_runtime.deadletters' (a contract test compares them); the first eight are on every
# dead letter, the others only where they say so.
DEAD_LETTER_HEADERS: dict[str, JsonObject] = {
    "x-dlq-original-topic": {"type": "string", "description": "The topic the message was consumed from."},
    "x-dlq-original-partition": {
        "type": "string",
        "pattern": r"^[0-9]+$",
        "description": "Its partition, in decimal.",
    },
    "x-dlq-original-offset": {"type": "string", "pattern": r"^[0-9]+$", "description": "Its offset, in decimal."},
    "x-dlq-error": {
        "type": "string",
        "description": "What went wrong, for people (error type and message, shortened).",
    },
    "x-dlq-error-code": {
        "type": "string",
        "description": "A stable reason code for machines, e.g. missing_header, unknown_type.",
    },
    "x-dlq-service": {"type": "string", "description": "The consuming service that gave up, e.g. ticketing."},
    "x-dlq-failed-at": {
        "type": "string",
        "format": "date-time",
        "description": "When it gave up: an RFC 3339 instant in UTC.",
    },
    "x-dlq-attempts": {
        "type": "string",
        "pattern": r"^[0-9]+$",
        "description": "How many times it was tried, in decimal.",
    },
    "x-dlq-no-key": {
        "type": "string",
        "const": "true",
        "description": "The record had neither key nor value; the dead letter's key is the placeholder glv-dlq:no-key.",
    },
    "x-dlq-truncated": {
        "type": "string",
        "const": "true",
        "description": (
            "The value was cut to its first 512 KiB, the key to 1 KiB, or original headers beyond 64 KiB were "
            "dropped: not the original record, so it is not replayed."
        ),
    },
    "x-dlq-original-length": {
        "type": "string",
        "pattern": r"^[0-9]+$",
        "description": "The original value's length in bytes, when it was cut.",
    },
    "x-dlq-original-sha256": {
        "type": "string",
        "pattern": r"^[0-9a-f]{64}$",
        "description": "Hex SHA-256 of the original value, when it was cut.",
    },
    "x-dlq-replayed-from-topic": {
        "type": "string",
        "description": (
            "On a record put back by `glv-deadletters replay`, and on the dead letter of such a record that "
            "failed again: the dead-letter topic (with its prefix) holding the copy it came from."
        ),
    },
    "x-dlq-replayed-from-partition": {
        "type": "string",
        "pattern": r"^[0-9]+$",
        "description": "With x-dlq-replayed-from-topic: the copy's partition, in decimal.",
    },
    "x-dlq-replayed-from-offset": {
        "type": "string",
        "pattern": r"^[0-9]+$",
        "description": "With x-dlq-replayed-from-topic: the copy's offset, in decimal.",
    },
    "x-dlq-reference-only": {
        "type": "string",
        "const": "true",
        "description": (
            "The dead letter of a replay that failed again: no value, and of the record's own headers only the "
            "CloudEvents attributes and traceparent; x-dlq-replayed-from-* say where the copy is."
        ),
    },
}
# On every dead letter.
DEAD_LETTER_REQUIRED_HEADERS: tuple[str, ...] = (
    "x-dlq-original-topic",
    "x-dlq-original-partition",
    "x-dlq-original-offset",
    "x-dlq-error",
    "x-dlq-error-code",
    "x-dlq-service",
    "x-dlq-failed-at",
    "x-dlq-attempts",
)
# Every topic (or per-portal family of topics) the AsyncAPI document describes.
DOCUMENTED_TOPICS: tuple[Topic, ...] = EVENT_TOPICS + DEAD_LETTER_TOPICS
PORTAL_PARAMETER = PORTAL_PLACEHOLDER.strip("{}")


# ---------------------------------------------------------------- JSON Schema


def schema_path(model: EventModel) -> str:
    return f"{JSONSCHEMA_DIR}/{model.event_type()}.json"


def snapshot_path(model: EventModel) -> str:
    """Where the frozen schema of a released event type lives, e.g. compat/v1/glv.TicketFiled.v1.json."""
    return f"{COMPAT_DIR}/v{model.version}/{model.event_type()}.json"


def example_path(model: EventModel) -> str:
    return f"{EXAMPLES_DIR}/{model.event_type()}.json"


def event_schema(model: EventModel) -> JsonObject:
    """The standalone JSON Schema (draft 2020-12) of one event type's data."""
    schema: JsonObject = model.model_json_schema(mode="validation")
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = SCHEMA_ID_PREFIX + model.event_type()
    schema["title"] = model.event_type()
    return schema


def render_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------- AsyncAPI


def _ref(*parts: str) -> JsonObject:
    # JSON Pointer escaping, although none of our names contain "~" or "/".
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)}


def _sorted(value: Any) -> Any:
    """Sort schema keys recursively, so that the YAML reads like the JSON files."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _party_id(party: str) -> str:
    # Registry entries may carry a remark in parentheses ("ticketing load-catalog (until ...)").
    name = party.split("(", maxsplit=1)[0].strip().lower()
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def _component_schemas() -> dict[str, JsonObject]:
    """Every event's schema as a component, its nested models hoisted beside it."""
    components: dict[str, JsonObject] = {}
    for model in ALL_EVENTS:
        schema: JsonObject = model.model_json_schema(mode="validation", ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            if name in components and components[name] != definition:
                raise ValueError(f"two different models are both named {name!r}; rename one")
            components[name] = definition
        schema["title"] = model.event_type()
        components[model.event_type()] = schema
    components["CloudEventHeaders"] = {
        "type": "object",
        "description": (
            "CloudEvents 1.0 attributes in the Kafka protocol binding, binary content mode: one header each, "
            "UTF-8 values."
        ),
        "required": list(REQUIRED_HEADERS),
        "properties": copy.deepcopy(CLOUDEVENT_HEADERS),
    }
    components["DeadLetterHeaders"] = {
        "type": "object",
        "description": (
            "Added by the service that dead-lettered the message; the message's own headers "
            "(ce_*, traceparent) are kept beside them. UTF-8 values."
        ),
        "required": list(DEAD_LETTER_REQUIRED_HEADERS),
        "properties": copy.deepcopy(DEAD_LETTER_HEADERS),
    }
    return {name: _sorted(schema) for name, schema in components.items()}


def _key_schema(topic: Topic) -> JsonObject:
    if not topic.events:
        return {"description": "The original message's key, unchanged."}
    key_schemas = []
    # Events about no one ticket (an erasure request) are keyed otherwise: said in their docs.
    keyed = [m for m in topic.events if topic.key in m.model_json_schema(mode="validation")["properties"]]
    others = [m.event_name for m in topic.events if m not in keyed]
    for model in keyed:
        prop = dict(model.model_json_schema(mode="validation")["properties"][topic.key])
        prop.pop("title", None)
        key_schemas.append(prop)
    if any(k != key_schemas[0] for k in key_schemas):
        raise ValueError(f"events on {topic.name} disagree on the type of their key {topic.key}")
    key: JsonObject = dict(key_schemas[0])
    key["description"] = (
        f"The event's {topic.key} as UTF-8 text, so that all events of one {topic.key} stay in order on one partition."
    )
    if others:
        key["description"] += f" {', '.join(others)}: '<portal_id>/<stakeholder_ref>'."
    return {name: _sorted(key[name]) for name in sorted(key)}


def _topic_configuration(topic: Topic) -> JsonObject:
    config = topic.topic_config()
    binding: JsonObject = {}
    for name, value in config.items():
        if name == "cleanup.policy":
            binding[name] = value.split(",")
        elif name in ("retention.ms", "retention.bytes", "delete.retention.ms", "max.message.bytes"):
            binding[name] = int(value)
    return binding


def _message(model: EventModel, topic: Topic) -> JsonObject:
    message: JsonObject = {"name": model.event_type(), "title": f"{model.event_name} v{model.version}"}
    doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    if doc:
        message["summary"] = doc
    message |= {
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "allOf": [
                _ref("components", "schemas", "CloudEventHeaders"),
                {"type": "object", "properties": {"ce_type": {"type": "string", "const": model.event_type()}}},
            ],
        },
        "payload": _ref("components", "schemas", model.event_type()),
        "bindings": {"kafka": {"key": _key_schema(topic), "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    return message


def _portal_parameter(topic: Topic) -> JsonObject:
    """The `{portal_id}` of a per-portal channel's address (AsyncAPI 3 has no schema for it)."""
    parameter: JsonObject = {
        "description": (
            f"The portal's id, as onboarded (`glv-ticketing portal onboard ID`): it matches {PORTAL_ID_PATTERN} "
            "(lower-case letters, digits and dashes). The portal's Kafka user is portal-<portal_id>; the broker's "
            "ACLs let only that user " + ("write this topic." if "portals" in topic.producers else "read this topic.")
        ),
        "examples": ["portal-lelang"],
    }
    if topic is PORTAL_TICKETS:
        # The body names the same portal as the topic, or the record is dead-lettered (portal_mismatch).
        parameter["location"] = "$message.payload#/portal_id"
    return parameter


def _channel(topic: Topic, messages: JsonObject) -> JsonObject:
    description = (
        f"{topic.description} Key: {topic.key.replace('_', ' ')}. Produced by {', '.join(topic.producers)}; "
        f"consumed by {', '.join(topic.consumers)}."
    )
    kafka: JsonObject = {
        "partitions": topic.partitions,
        "topicConfiguration": _topic_configuration(topic),
        "bindingVersion": KAFKA_BINDING_VERSION,
    }
    channel: JsonObject = {"address": topic.name, "title": topic.name}
    if topic.per_portal:
        description += (
            " One topic per onboarded portal: the address's {portal_id} is the portal's id, e.g. "
            f"{topic.for_portal('portal-lelang')}."
        )
        channel |= {"description": description, "parameters": {PORTAL_PARAMETER: _portal_parameter(topic)}}
    else:
        channel["description"] = description
        kafka = {"topic": topic.name, **kafka}
    channel |= {"messages": messages, "bindings": {"kafka": kafka}}
    return channel


def asyncapi_document() -> JsonObject:
    """An AsyncAPI 3.0 document of every topic in the registry, from the system's point of view."""
    channels: JsonObject = {}
    operations: JsonObject = {}
    messages: JsonObject = {}
    for topic in DOCUMENTED_TOPICS:
        if topic.events:
            channel_messages = {m.event_type(): _ref("components", "messages", m.event_type()) for m in topic.events}
            for model in topic.events:
                messages[model.event_type()] = _message(model, topic)
        else:
            channel_messages = {"DeadLetter": _ref("components", "messages", "DeadLetter")}
            messages["DeadLetter"] = {
                "name": "DeadLetter",
                "title": "Dead letter",
                "summary": (
                    "A message a service could not decode or apply, as it was (or, after a replay failed again, "
                    "a reference to the first copy), with the reason in headers."
                ),
                "headers": _ref("components", "schemas", "DeadLetterHeaders"),
                "payload": {
                    "description": (
                        "The original Kafka value, byte for byte (it may not be valid JSON); its first 512 KiB "
                        "with x-dlq-truncated; none with x-dlq-reference-only."
                    )
                },
                "bindings": {"kafka": {"key": _key_schema(topic), "bindingVersion": KAFKA_BINDING_VERSION}},
            }
        channels[topic.name] = _channel(topic, channel_messages)
        for action, parties in (("send", topic.producers), ("receive", topic.consumers)):
            for party in parties:
                operations[f"{_party_id(party)}.{action}.{topic.name}"] = {
                    "action": action,
                    "channel": _ref("channels", topic.name),
                    "title": f"{party} {'publishes to' if action == 'send' else 'consumes'} {topic.name}",
                    "messages": [_ref("channels", topic.name, "messages", name) for name in channel_messages],
                    "tags": [{"name": _party_id(party)}],
                }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "GLV events",
            "version": _package_version(),
            "description": (
                "Events exchanged by the GLV (Gerai Layanan Virtual) services and upstream portals over "
                "Apache Kafka. Every message is a CloudEvent in the Kafka binding, binary content mode: "
                "attributes in ce_* headers, the event data as the JSON value, the ticket id as the key (the office "
                "code on glv.catalog). Each portal writes only its own intake topic glv.portal.{portal_id}.tickets "
                "and reads only its own updates topic glv.portal.{portal_id}.updates, where ticketing forwards "
                "every event about the portal's tickets with its id and headers unchanged; the service topics are "
                "GLV's alone. "
                f"Generated from the glv_schemas models by `{REGENERATE_COMMAND}`; do not edit by hand."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": LOCAL_BOOTSTRAP,
                "protocol": "kafka",
                "description": (
                    "The local stack's plain listener (deploy/local; make demo), no authentication. Elsewhere, "
                    "KAFKA_BOOTSTRAP_SERVERS says where."
                ),
            },
            "local-secure": {
                "host": LOCAL_SECURE_BOOTSTRAP,
                "protocol": "kafka-secure",
                "description": (
                    "The local stack's secure broker (deploy/local/stack.sh start --secure): TLS with the local CA, "
                    "SASL SCRAM-SHA-512, ACLs enforced, as in production."
                ),
                "security": [_ref("components", "securitySchemes", "scramSha512")],
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": _component_schemas(),
            "messages": messages,
            "securitySchemes": {
                "scramSha512": {
                    "type": "scramSha512",
                    "description": (
                        "SASL SCRAM-SHA-512 over TLS (SASL_SSL). Each GLV service has its user glv-<service>, each "
                        "portal portal-<portal_id>; the broker's ACLs say what each may read and write."
                    ),
                }
            },
        },
    }


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("glv-schemas")
    except PackageNotFoundError:
        return "0.0.0"


class _Dumper(yaml.SafeDumper):
    """Block style, and lists indented under their key (as most YAML in the wild)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def render_yaml(document: JsonObject) -> str:
    header = f"# Generated by `{REGENERATE_COMMAND}` from the glv_schemas models. Do not edit.\n"
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    return header + body


# --------------------------------------------------------------- files, check


def generated_files() -> dict[str, str]:
    """Every generated file: its path relative to the root, and its content."""
    files = {schema_path(model): render_json(event_schema(model)) for model in ALL_EVENTS}
    files[ASYNCAPI_FILE] = render_yaml(asyncapi_document())
    return files


def _extra_files(root: Path, expected: dict[str, str]) -> Iterator[str]:
    # The generator owns jsonschema/: a file there that no model produces is left over.
    directory = root / JSONSCHEMA_DIR
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            relative = path.relative_to(root).as_posix()
            if relative not in expected:
                yield relative


def check(root: Path = ROOT) -> list[str]:
    """What is out of date under root, as 'stale: path', 'missing: path' or 'extra: path' lines."""
    expected = generated_files()
    return compare_files(root, expected, _extra_files(root, expected))


def compare_files(root: Path, expected: dict[str, str], extra: Iterable[str]) -> list[str]:
    """Generated files against what is on disk: 'missing: path', 'stale: path', 'extra: path'."""
    problems = []
    for relative, content in expected.items():
        path = root / relative
        if not path.is_file():
            problems.append(f"missing: {relative}")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"stale: {relative}")
    problems.extend(f"extra: {relative}" for relative in extra)
    return problems


def write(root: Path = ROOT) -> list[str]:
    """Write every generated file that differs and remove leftovers; returns what changed."""
    expected = generated_files()
    return write_files(root, expected, _extra_files(root, expected))


def write_files(root: Path, expected: dict[str, str], extra: Iterable[str]) -> list[str]:
    """Write the files of `expected` that differ on disk and remove `extra`; returns what changed."""
    changed = []
    for relative, content in expected.items():
        path = root / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8", newline="\n")
            changed.append(f"wrote: {relative}")
    for relative in list(extra):
        (root / relative).unlink()
        changed.append(f"removed: {relative}")
    return changed


def freeze(root: Path = ROOT) -> list[str]:
    """Snapshot the schema of every event type that has no snapshot yet; never overwrite one."""
    written = []
    for model in ALL_EVENTS:
        path = root / snapshot_path(model)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_json(event_schema(model)), encoding="utf-8", newline="\n")
            written.append(f"froze: {snapshot_path(model)}")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glv-schemas", description=__doc__.split("\n\n")[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is not current")
    mode.add_argument("--freeze", action="store_true", help="write compatibility snapshots for new event types only")
    parser.add_argument("--root", type=Path, default=ROOT, help=f"directory holding the files (default: {ROOT})")
    args = parser.parse_args(argv)
    root: Path = args.root

    if args.check:
        return report_check(check(root), f"generated contract files under {root}", REGENERATE_COMMAND)
    return report_written(freeze(root) if args.freeze else write(root), "nothing to do" if args.freeze else None)


def report_check(problems: Sequence[str], what: str, regenerate_command: str) -> int:
    """Print a --check verdict for generated files; the exit status."""
    if problems:
        print(f"{what} are not current:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print(f"regenerate them with: {regenerate_command}", file=sys.stderr)
        return 1
    print(f"{what} are current")
    return 0


def report_written(lines: Sequence[str], when_nothing: str | None = None) -> int:
    for line in lines:
        print(line)
    if not lines:
        print(when_nothing or "everything was current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
