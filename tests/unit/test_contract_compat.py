"""Guard: inside a major version a contract may only gain optional fields.

The snapshot holds the JSON schema of every v1 payload as published. To record an allowed change
(a new optional field), run ``python -m tests.unit.test_contract_compat --update`` and commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shared.contracts.events import PAYLOADS

SNAPSHOT = Path(__file__).parent / "snapshots" / "contracts-v1.json"


def current() -> dict[str, Any]:
    return {ce_type: model.model_json_schema() for ce_type, model in sorted(PAYLOADS.items())}


def breaking_changes(old: dict[str, Any], new: dict[str, Any], where: str = "") -> list[str]:
    """What in ``new`` would break a consumer or producer written against ``old``."""
    problems: list[str] = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_schema in old_props.items():
        if name not in new_props:
            problems.append(f"{where}{name}: removed")
        elif _strip(old_schema) != _strip(new_props[name]):
            problems.append(f"{where}{name}: type or constraints changed")
    for name in set(new.get("required", [])) - set(old.get("required", [])):
        problems.append(f"{where}{name}: new required field")
    for name, old_def in old.get("$defs", {}).items():
        if name in new.get("$defs", {}):
            problems += breaking_changes(old_def, new["$defs"][name], f"{where}{name}.")
        else:
            problems.append(f"{where}{name}: definition removed")
    return problems


def _strip(schema: Any) -> Any:
    """Ignore what does not change the wire format (titles, descriptions)."""
    if isinstance(schema, dict):
        return {k: _strip(v) for k, v in schema.items() if k not in ("title", "description")}
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema


def test_no_breaking_change_since_snapshot() -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    now = current()
    problems = [f"{t} removed" for t in snapshot if t not in now]
    for ce_type, schema in snapshot.items():
        if ce_type in now:
            problems += [f"{ce_type}: {p}" for p in breaking_changes(schema, now[ce_type])]
    assert problems == []


def test_guard_catches_a_new_required_field_and_a_removed_one() -> None:
    old = {"properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}
    new = {"properties": {"a": {"type": "string"}, "c": {"type": "string"}}, "required": ["a", "c"]}
    assert sorted(breaking_changes(old, new)) == ["b: removed", "c: new required field"]


def test_guard_allows_a_new_optional_field() -> None:
    old = {"properties": {"a": {"type": "string"}}, "required": ["a"]}
    new = {
        "properties": {"a": {"type": "string", "title": "A"}, "z": {"type": "string"}},
        "required": ["a"],
    }
    assert breaking_changes(old, new) == []


if __name__ == "__main__" and "--update" in sys.argv:
    SNAPSHOT.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
