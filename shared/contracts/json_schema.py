"""Keywords added to the published JSON Schemas (docs/schemas, docs/asyncapi) of types whose rule
is a Python validator: pydantic cannot see into those, so without this the schemas would accept
what the services refuse.

Each added validation keyword is also listed under :data:`RESTATED` in the same schema node: it
states a rule the service enforced before the schema said so, which the contract compatibility
guard (tests/unit/test_contract_compat.py) accepts when a keyword is first published; once
published, a change of it is judged like any other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

JsonDict = dict[str, Any]

# A vendor keyword (an annotation in JSON Schema 2020-12: validators ignore unknown keywords).
RESTATED = "x-refex-restated"
# On a property the service fills in when the sender leaves it out: optional for senders.
FILLED_FROM = "x-refex-filled-from"
_ANNOTATIONS = frozenset({"title", "description", "$comment", "examples", "default"})


def restate(schema: JsonDict, keywords: JsonDict) -> None:
    """Add ``keywords`` to ``schema``, marking the validation keywords among them as restated."""
    schema.update(keywords)
    restated = {k for k in keywords if k not in _ANNOTATIONS and not k.startswith("x-")}
    if restated:
        schema[RESTATED] = sorted({*schema.get(RESTATED, ()), *restated})


def restating(keywords: JsonDict) -> JsonDict:
    """``keywords`` with their marker, for ``Field(json_schema_extra=...)``."""
    schema: JsonDict = {}
    restate(schema, keywords)
    return schema


@dataclass(frozen=True, slots=True, eq=False)  # hashed by identity: typing hashes metadata
class JsonSchemaExtra:
    """``Annotated`` metadata adding keywords to the published JSON Schema of a type whose rule
    is a Python validator (pydantic cannot see into those), so that the schema states every
    rule JSON Schema can express and an integrator's validator agrees with the service."""

    keywords: JsonDict

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        restate(schema, self.keywords)
        return schema
