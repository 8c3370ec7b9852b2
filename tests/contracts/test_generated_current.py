"""The checked-in JSON Schema files and AsyncAPI document are what the models generate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from glv_runtime.deadletters import DLQ_HEADERS
from glv_schemas.events import ALL_EVENTS
from glv_schemas.generate import (
    ASYNCAPI_FILE,
    CLOUDEVENT_HEADERS,
    DEAD_LETTER_HEADERS,
    DEAD_LETTER_REQUIRED_HEADERS,
    DOCUMENTED_TOPICS,
    REGENERATE_COMMAND,
    check,
    freeze,
    main,
    schema_path,
    snapshot_path,
    write,
)
from glv_schemas.topics import ALL_TOPICS, DEAD_LETTER_TOPICS, PORTAL_TICKETS, PORTAL_TOPICS

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


def test_generated_files_are_current() -> None:
    problems = check(SCHEMAS_DIR)
    assert not problems, (
        "generated contract files are out of date:\n  "
        + "\n  ".join(problems)
        + f"\nregenerate them with `{REGENERATE_COMMAND}` and commit the result"
    )


def test_generation_does_not_depend_on_hash_seed_or_cwd(tmp_path: Path) -> None:
    script = "import json; from glv_schemas.generate import generated_files; print(json.dumps(generated_files()))"
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]


def test_check_reports_stale_missing_and_extra_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert write(tmp_path)
    assert check(tmp_path) == []
    assert write(tmp_path) == []  # nothing changes a second time

    stale, missing = schema_path(ALL_EVENTS[0]), schema_path(ALL_EVENTS[1])
    (tmp_path / stale).write_text("{}\n", encoding="utf-8")
    (tmp_path / missing).unlink()
    (tmp_path / "jsonschema" / "glv.Retired.v1.json").write_text("{}\n", encoding="utf-8")
    assert sorted(check(tmp_path)) == sorted(
        [f"stale: {stale}", f"missing: {missing}", "extra: jsonschema/glv.Retired.v1.json"]
    )

    assert main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert stale in err and missing in err and "glv.Retired.v1.json" in err and REGENERATE_COMMAND in err

    assert main(["--root", str(tmp_path)]) == 0
    assert check(tmp_path) == []
    assert main(["--check", "--root", str(tmp_path)]) == 0


def test_freeze_writes_only_missing_snapshots(tmp_path: Path) -> None:
    assert len(freeze(tmp_path)) == len(ALL_EVENTS)
    frozen = tmp_path / snapshot_path(ALL_EVENTS[0])
    frozen.write_text('{"edited": "by hand"}\n', encoding="utf-8")
    assert freeze(tmp_path) == []
    assert frozen.read_text(encoding="utf-8") == '{"edited": "by hand"}\n'
    assert check(tmp_path) != []  # --freeze is not --write: the generated files were not touched


def test_json_schema_files_carry_id_title_and_dialect() -> None:
    for model in ALL_EVENTS:
        schema = json.loads((SCHEMAS_DIR / schema_path(model)).read_text(encoding="utf-8"))
        assert schema["$id"].endswith(model.event_type())
        assert schema["title"] == model.event_type()
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["additionalProperties"] is False


# ------------------------------------------------------------------ AsyncAPI


def _asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((SCHEMAS_DIR / ASYNCAPI_FILE).read_text(encoding="utf-8"))
    return document


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_asyncapi_references_all_resolve() -> None:
    document = _asyncapi()
    for ref in _refs(document):
        assert ref.startswith("#/"), f"external reference {ref}"
        node: Any = document
        for raw_part in ref[2:].split("/"):
            part = raw_part.replace("~1", "/").replace("~0", "~")
            assert isinstance(node, dict) and part in node, f"unresolved {ref}"
            node = node[part]


def test_asyncapi_describes_every_topic_event_and_party() -> None:
    document = _asyncapi()
    assert document["asyncapi"].startswith("3.0")
    channels = document["channels"]
    assert {c["address"] for c in channels.values()} == {t.name for t in ALL_TOPICS + PORTAL_TOPICS}
    assert sorted(t.name for t in DOCUMENTED_TOPICS) == sorted(t.name for t in ALL_TOPICS + PORTAL_TOPICS)
    assert {m.event_type() for m in ALL_EVENTS} <= set(document["components"]["messages"])
    operations = document["operations"].values()
    for topic in DOCUMENTED_TOPICS:
        channel = channels[topic.name]
        assert channel["bindings"]["kafka"]["partitions"] == topic.partitions
        assert set(channel["messages"]) == ({m.event_type() for m in topic.events} or {"DeadLetter"})
        on_topic = [op for op in operations if op["channel"]["$ref"] == f"#/channels/{topic.name}"]
        assert sum(op["action"] == "send" for op in on_topic) == len(topic.producers)
        assert sum(op["action"] == "receive" for op in on_topic) == len(topic.consumers)


def test_asyncapi_per_portal_channels_have_the_portal_as_an_address_parameter() -> None:
    channels = _asyncapi()["channels"]
    for topic in PORTAL_TOPICS:
        channel = channels[topic.name]
        assert "{portal_id}" in channel["address"]
        assert set(channel["parameters"]) == {"portal_id"}
        assert "topic" not in channel["bindings"]["kafka"]  # no one concrete topic
    # What a portal files names the topic's portal: the parameter's value is in the body.
    assert channels[PORTAL_TICKETS.name]["parameters"]["portal_id"]["location"] == "$message.payload#/portal_id"
    for topic in ALL_TOPICS:
        assert "parameters" not in channels[topic.name]


def test_asyncapi_messages_carry_cloudevents_headers_and_the_key() -> None:
    document = _asyncapi()
    components = document["components"]
    assert set(components["schemas"]["CloudEventHeaders"]["properties"]) == set(CLOUDEVENT_HEADERS)
    assert set(CLOUDEVENT_HEADERS) == {
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_specversion",
        "ce_time",
        "ce_subject",
        "content-type",
        "traceparent",
    }
    ticket_filed = components["messages"]["glv.TicketFiled.v1"]
    assert ticket_filed["bindings"]["kafka"]["key"]["format"] == "uuid"
    assert ticket_filed["headers"]["allOf"][1]["properties"]["ce_type"]["const"] == "glv.TicketFiled.v1"
    assert ticket_filed["payload"] == {"$ref": "#/components/schemas/glv.TicketFiled.v1"}


def test_asyncapi_dead_letter_topics_carry_their_headers() -> None:
    document = _asyncapi()
    headers = document["components"]["schemas"]["DeadLetterHeaders"]
    # Every header the runtime writes is described; these eight are on every dead letter.
    assert set(headers["properties"]) == set(DEAD_LETTER_HEADERS) == set(DLQ_HEADERS)
    assert (
        set(headers["required"])
        == set(DEAD_LETTER_REQUIRED_HEADERS)
        == {
            "x-dlq-original-topic",
            "x-dlq-original-partition",
            "x-dlq-original-offset",
            "x-dlq-error",
            "x-dlq-error-code",
            "x-dlq-service",
            "x-dlq-failed-at",
            "x-dlq-attempts",
        }
    )
    dead_letter = {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}}
    for topic in DEAD_LETTER_TOPICS:
        assert document["channels"][topic.name]["messages"] == dead_letter


# ---------------------------------------------------------------- docs/events.md

EVENTS_DOC = SCHEMAS_DIR.parent / "docs" / "events.md"


def test_events_doc_names_every_topic_event_type_and_header() -> None:
    doc = EVENTS_DOC.read_text(encoding="utf-8")
    names = [t.name for t in ALL_TOPICS + PORTAL_TOPICS] + [m.event_type() for m in ALL_EVENTS]
    names += list(CLOUDEVENT_HEADERS) + list(DEAD_LETTER_HEADERS)
    missing = [name for name in names if f"`{name}`" not in doc]
    assert not missing, f"docs/events.md does not mention {missing}"


def test_events_doc_lists_every_field_of_every_event() -> None:
    doc = EVENTS_DOC.read_text(encoding="utf-8")
    sections = {
        block.split("\n", 1)[0].split(" ")[0]: block for block in doc.split("\n### ")[1:] + doc.split("\n#### ")[1:]
    }
    for model in ALL_EVENTS:
        schema = model.model_json_schema(mode="validation")
        tables = [(model.event_name, schema), *schema.get("$defs", {}).items()]
        for name, sub in tables:
            section = sections.get(name, "").split("\n### ")[0].split("\n#### ")[0]
            assert section, f"docs/events.md has no section for {name}"
            absent = [f for f in sub["properties"] if f"| `{f}` |" not in section]
            assert not absent, f"docs/events.md, {name}: no row for {absent}"
