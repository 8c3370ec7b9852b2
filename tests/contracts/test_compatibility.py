"""Old and new readers and writers of the event contracts must understand each other.

Kafka keeps messages for days and consumers are upgraded one by one, so a released
event type must stay readable in both directions:

- new reader, old data: every stored example (what a v1 writer produced) validates with
  the current model;
- old reader, new data: what the current model produces validates against the frozen
  JSON Schema of the released version (`schemas/compat/v<N>/`), which refuses unknown
  fields, as every GLV reader does;
- and the validation keywords of the current schema are those of the snapshot, which
  also catches a widened or narrowed type that no example happens to exercise.

A change that fails here belongs in a new event version (glv.<Name>.v<N+1>), never in
the released one. Run `python -m glv_schemas.generate --freeze` to snapshot a new
version; never edit or regenerate an existing snapshot.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import ValidationError

from glv_schemas.events import ALL_EVENTS, EventModel, TicketFiled
from glv_schemas.generate import (
    COMPAT_DIR,
    EXAMPLES_DIR,
    event_schema,
    example_path,
    snapshot_path,
)

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
EVENT_IDS = [model.event_type() for model in ALL_EVENTS]
RELEASED = [model for model in ALL_EVENTS if (SCHEMAS_DIR / snapshot_path(model)).is_file()]

# Keywords that only annotate: changing them changes no reader's verdict. `default` is
# not among them: a new default would silently change the meaning of old messages.
ANNOTATIONS = frozenset({"title", "description", "examples", "$comment", "$id", "$schema", "deprecated"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "required"})
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _load(relative: str) -> Any:
    return json.loads((SCHEMAS_DIR / relative).read_text(encoding="utf-8"))


def _format_checker() -> FormatChecker:
    # jsonschema checks "date-time" and "uri" only with optional packages installed;
    # these stand-ins keep the old reader strict about the formats our events use.
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not _RFC3339.match(value):
            return False
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        return True

    @checker.checks("uri", raises=ValueError)
    def _uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        return bool(parts.scheme and parts.netloc)

    return checker


def _old_reader_errors(snapshot: dict[str, Any], instance: Any) -> list[str]:
    validator = Draft202012Validator(snapshot, format_checker=_format_checker())
    errors = validator.iter_errors(instance)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), f"unexpected $ref {ref}"
        schema = root["$defs"][ref.removeprefix("#/$defs/")]
    return schema


def _inline(schema: Any, root: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """The schema with every internal $ref replaced by its target: a renamed class is no change."""
    if isinstance(schema, list):
        return [_inline(item, root, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref":
            assert value not in seen, f"recursive schema at {value}"
            out.update(_inline(_resolve({"$ref": value}, root), root, (*seen, value)))
        elif key == "$defs":
            continue
        elif key in _SCHEMA_MAPS:
            out[key] = {name: _inline(sub, root, seen) for name, sub in value.items()}
        elif key in _DATA_KEYWORDS:
            out[key] = value
        else:
            out[key] = _inline(value, root, seen)
    return out


def _shape(schema: Any) -> Any:
    """Only what decides whether an instance is valid (annotations dropped)."""
    if isinstance(schema, list):
        return [_shape(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ANNOTATIONS:
            continue
        if key in _SCHEMA_MAPS:
            out[key] = {name: _shape(sub) for name, sub in value.items()}
        elif key in _DATA_KEYWORDS:
            out[key] = value
        else:
            out[key] = _shape(value)
    return out


def _validation_shape(schema: dict[str, Any]) -> Any:
    return _shape(_inline(schema, schema))


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{path}/{key}"
            if key not in new:
                found.append(f"{where}: removed (was {json.dumps(old[key])})")
            elif key not in old:
                found.append(f"{where}: added ({json.dumps(new[key])})")
            else:
                found.extend(_differences(old[key], new[key], where))
        return found
    if old != new:
        return [f"{path or '/'}: {json.dumps(old)} -> {json.dumps(new)}"]
    return []


def _required_only(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """The value with every field an old writer could have left out removed, recursively."""
    schema = _resolve(schema, root)
    if isinstance(value, dict) and "properties" in schema:
        required = set(schema.get("required", ()))
        return {k: _required_only(v, schema["properties"][k], root) for k, v in value.items() if k in required}
    if isinstance(value, list) and "items" in schema:
        return [_required_only(v, schema["items"], root) for v in value]
    return value


def _unfilled(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "") -> list[str]:
    """Fields of the schema that the value leaves out, sets to null, or (lists) leaves empty."""
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        branches = [_resolve(b, root) for b in schema["anyOf"] if _resolve(b, root).get("type") != "null"]
        schema = branches[0] if len(branches) == 1 else {}
    found = []
    if "properties" in schema and isinstance(value, dict):
        for name, sub in schema["properties"].items():
            if value.get(name) is None:
                found.append(f"{path}/{name}")
            else:
                found.extend(_unfilled(value[name], sub, root, f"{path}/{name}"))
    if "items" in schema and isinstance(value, list):
        if not value:
            found.append(f"{path}[]")
        for index, item in enumerate(value):
            found.extend(_unfilled(item, schema["items"], root, f"{path}[{index}]"))
    return found


# ------------------------------------------------------- new reader, old data


@pytest.mark.parametrize("model", ALL_EVENTS, ids=EVENT_IDS)
def test_stored_example_validates_with_the_current_model(model: EventModel) -> None:
    example = _load(example_path(model))
    try:
        model.model_validate(example)
    except ValidationError as exc:
        pytest.fail(
            f"{model.event_type()}: the current model cannot read what a v1 writer produced "
            f"({example_path(model)}):\n{exc}\nThis change needs a new event version."
        )


@pytest.mark.parametrize("model", ALL_EVENTS, ids=EVENT_IDS)
def test_stored_example_fills_every_field(model: EventModel) -> None:
    # The examples are the "all optional fields filled" instances: a field missing here
    # is either a field added to a released version (a new version instead) or a gap.
    schema = model.model_json_schema(mode="validation")
    unfilled = _unfilled(_load(example_path(model)), schema, schema)
    assert not unfilled, (
        f"{example_path(model)} leaves out {unfilled}: examples fill every field; a field added to "
        f"{model.event_type()} after its release belongs in a new version"
    )


# ------------------------------------------------------- old reader, new data


@pytest.mark.parametrize("model", RELEASED, ids=[m.event_type() for m in RELEASED])
def test_current_output_validates_against_the_frozen_snapshot(model: EventModel) -> None:
    snapshot = _load(snapshot_path(model))
    full = model.model_validate(_load(example_path(model))).model_dump(mode="json")
    errors = _old_reader_errors(snapshot, full)
    assert not errors, f"a {model.event_type()} reader built on {snapshot_path(model)} refuses current output: {errors}"


@pytest.mark.parametrize("model", RELEASED, ids=[m.event_type() for m in RELEASED])
def test_minimal_current_output_validates_against_the_frozen_snapshot(model: EventModel) -> None:
    snapshot = _load(snapshot_path(model))
    schema = model.model_json_schema(mode="validation")
    minimal_input = _required_only(_load(example_path(model)), schema, schema)
    minimal = model.model_validate(minimal_input).model_dump(mode="json")  # defaults filled in
    errors = _old_reader_errors(snapshot, minimal)
    assert not errors, f"a {model.event_type()} reader refuses current output with defaults: {errors}"


@pytest.mark.parametrize("model", RELEASED, ids=[m.event_type() for m in RELEASED])
def test_current_schema_validates_what_the_snapshot_validates(model: EventModel) -> None:
    old = _validation_shape(_load(snapshot_path(model)))
    new = _validation_shape(event_schema(model))
    changes = _differences(old, new)
    assert not changes, (
        f"{model.event_type()} changed since it was released ({snapshot_path(model)}):\n  "
        + "\n  ".join(changes)
        + f"\nOlder or newer readers would disagree: publish glv.{model.event_name}.v{model.version + 1} instead."
    )


# ----------------------------------------------------------- the checks bite


def test_snapshot_refuses_a_subclass_with_an_extra_required_field() -> None:
    class TicketFiledWithX(TicketFiled):
        x: int

    example = _load(example_path(TicketFiled))
    produced = TicketFiledWithX.model_validate({**example, "x": 7}).model_dump(mode="json")
    errors = _old_reader_errors(_load(snapshot_path(TicketFiled)), produced)
    assert errors, "the v1 snapshot accepted a message with an unknown field"
    assert any("'x'" in error for error in errors), errors
    # ...and the schema comparison sees it without any example.
    changes = _differences(
        _validation_shape(_load(snapshot_path(TicketFiled))),
        _validation_shape(TicketFiledWithX.model_json_schema(mode="validation")),
    )
    assert "/properties/x: added" in " ".join(changes)


def test_snapshot_refuses_a_renamed_field() -> None:
    example = _load(example_path(TicketFiled))
    renamed = {("office" if k == "office_code" else k): v for k, v in example.items()}
    errors = _old_reader_errors(_load(snapshot_path(TicketFiled)), renamed)
    assert any("office_code" in e for e in errors) and any("office" in e for e in errors), errors


def test_schema_comparison_catches_a_narrowed_type() -> None:
    # An old writer may have sent any office code; a reader that knows only PLP breaks.
    class TicketFiledOnlyPalopo(TicketFiled):
        office_code: Literal["PLP"]

    changes = _differences(
        _validation_shape(_load(snapshot_path(TicketFiled))),
        _validation_shape(TicketFiledOnlyPalopo.model_json_schema(mode="validation")),
    )
    assert any(change.startswith("/properties/office_code") for change in changes), changes


def test_schema_comparison_ignores_annotations_only() -> None:
    snapshot = _load(snapshot_path(TicketFiled))
    annotated = json.loads(json.dumps(snapshot))
    annotated["description"] = "reworded"
    annotated["properties"]["subject"]["title"] = "Perihal"
    assert _differences(_validation_shape(snapshot), _validation_shape(annotated)) == []
    # A property *named* description is data, not an annotation.
    removed = json.loads(json.dumps(snapshot))
    del removed["properties"]["description"]
    assert _differences(_validation_shape(snapshot), _validation_shape(removed))


# ------------------------------------------------------------------ coverage


@pytest.mark.parametrize("model", ALL_EVENTS, ids=EVENT_IDS)
def test_every_event_type_has_a_snapshot_and_an_example(model: EventModel) -> None:
    assert (SCHEMAS_DIR / snapshot_path(model)).is_file(), (
        f"{model.event_type()} has no compatibility snapshot: run `python -m glv_schemas.generate --freeze`"
    )
    assert (SCHEMAS_DIR / example_path(model)).is_file(), (
        f"{model.event_type()} has no example: write {example_path(model)} (every field filled)"
    )


def test_every_snapshot_and_example_belongs_to_a_current_event_type() -> None:
    # Retiring a released version is a decision: delete its snapshot and example with it.
    known = {snapshot_path(m) for m in ALL_EVENTS} | {example_path(m) for m in ALL_EVENTS}
    stored = {
        p.relative_to(SCHEMAS_DIR).as_posix()
        for pattern in (f"{COMPAT_DIR}/*/*.json", f"{EXAMPLES_DIR}/*.json")
        for p in SCHEMAS_DIR.glob(pattern)
    }
    assert stored - known == set()


def test_snapshots_sit_in_the_directory_of_their_version() -> None:
    for path in SCHEMAS_DIR.glob(f"{COMPAT_DIR}/*/*.json"):
        assert path.stem.endswith(f".{path.parent.name}"), f"{path} is not in compat/<its version>/"


# ------------------------------------------------------------------- intake


def test_intake_refuses_an_unknown_top_level_field() -> None:
    example = _load(example_path(TicketFiled))
    with pytest.raises(ValidationError) as caught:
        TicketFiled.model_validate({**example, "priority": "high"})
    assert [e["type"] for e in caught.value.errors()] == ["extra_forbidden"]


def test_intake_refuses_an_unknown_nested_field() -> None:
    example = _load(example_path(TicketFiled))
    stakeholder = {**example["stakeholder"], "birth_date": "1989-06-05"}
    with pytest.raises(ValidationError) as caught:
        TicketFiled.model_validate({**example, "stakeholder": stakeholder})
    assert [e["loc"] for e in caught.value.errors()] == [("stakeholder", "birth_date")]


@pytest.mark.parametrize("model", ALL_EVENTS, ids=EVENT_IDS)
def test_every_event_refuses_unknown_fields(model: EventModel) -> None:
    with pytest.raises(ValidationError, match=r"extra_forbidden|Extra inputs are not permitted"):
        model.model_validate({**_load(example_path(model)), "unexpected": True})


def test_times_are_emitted_as_utc_instants() -> None:
    example = _load(example_path(TicketFiled))
    local = {**example, "filed_at": "2026-11-29T10:15:00+08:00"}  # 10:15 WITA in Palopo
    assert TicketFiled.model_validate(local).model_dump(mode="json")["filed_at"] == "2026-11-29T02:15:00Z"
    with pytest.raises(ValidationError):
        TicketFiled.model_validate({**example, "filed_at": "2026-11-29T10:15:00"})  # no offset: refused
