"""Published contract documents, generated from the topic catalogue and the payload models.

- ``docs/schemas/<ce_type>.json``: the JSON Schema (draft 2020-12) of each CloudEvents type's
  payload. They are also the compatibility baseline: tests/unit/test_contract_compat.py checks
  every committed version of each file against the current models.
- ``docs/asyncapi/<view>.json``: an AsyncAPI 3.0.0 document per service (``intake``,
  ``referral``, ``notification``), for partner agencies (``agencies``) and for operator tooling
  (``operators``): the channels each one writes (``send``) and reads (``receive``).

Everything here is a pure function of :mod:`shared.contracts`; ``refex platform
export-contracts`` (``make contracts``) writes the files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.contracts.envelope import CONTENT_TYPE, SPEC_VERSION
from shared.contracts.events import PAYLOADS
from shared.contracts.json_schema import FILLED_FROM
from shared.contracts.topics import (
    AGENCY_FAMILIES,
    AGENCY_ID_PATTERN,
    CATALOGUE,
    Owner,
    TopicFamily,
    TopicSpec,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE_URL = "https://referralexchange.org/schemas/"
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
SCHEMAS_DIR = Path("docs") / "schemas"
ASYNCAPI_DIR = Path("docs") / "asyncapi"
OPENAPI_DIR = Path("docs") / "openapi"

SERVICES: tuple[Owner, ...] = (Owner.INTAKE, Owner.REFERRAL, Owner.NOTIFICATION, Owner.EVIDENCE)
DEAD_LETTER = "dead-letter"
_AGENCY_PARAM = "agency_id"

JSON = dict[str, Any]


# ----- the catalogue, read uniformly -------------------------------------------------------


def _channels() -> list[tuple[str, str, TopicSpec, TopicFamily | None]]:
    """(channel id, address, spec, family) for every fixed topic and every agency family."""
    out: list[tuple[str, str, TopicSpec, TopicFamily | None]] = [
        (spec.name, spec.name, spec, None) for spec in CATALOGUE
    ]
    for family in AGENCY_FAMILIES:
        address = f"agency.{{{_AGENCY_PARAM}}}.{family.stream}.v{family.major}"
        channel_id = f"agency.{_AGENCY_PARAM}.{family.stream}.v{family.major}"
        out.append((channel_id, address, family.template, family))
    return out


def _display_name(spec: TopicSpec, family: TopicFamily | None) -> str:
    return family.template.name if family is not None else spec.name


def carriers(ce_type: str) -> list[str]:
    """The topics (family display names for per-agency topics) that carry a CloudEvents type."""
    return [_display_name(spec, fam) for _, _, spec, fam in _channels() if ce_type in spec.payloads]


def _is_dead_letter(spec: TopicSpec) -> bool:
    return spec.name.endswith(".dlq.v1")


def dumps(document: JSON) -> str:
    """How every generated document is written: stable, diff-friendly."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ----- JSON Schemas of the payloads ---------------------------------------------------------


def _carried_on(ce_type: str) -> str:
    topics = ", ".join(f"`{t}`" for t in carriers(ce_type)) or "no topic"
    return f"Payload of the CloudEvents type `{ce_type}`, carried on {topics}."


def _payload_description(ce_type: str, model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip()
    return f"{doc}\n\n{_carried_on(ce_type)}" if doc else _carried_on(ce_type)


def sent_by_agencies(ce_type: str) -> bool:
    """Whether agencies write this type (on their own submissions, listings or responses)."""
    return any(
        ce_type in fam.template.payloads
        for fam in AGENCY_FAMILIES
        if fam.template.owner is Owner.AGENCY
    )


def as_sent_by_agencies(schema: Any) -> Any:
    """The schema as a sender must follow it: a property the service fills in when left out
    (marked ``x-refex-filled-from``) is not required of the sender."""
    if isinstance(schema, dict):
        out = {k: as_sent_by_agencies(v) for k, v in schema.items()}
        properties = out.get("properties")
        if isinstance(properties, dict) and isinstance(out.get("required"), list):
            out["required"] = [
                name
                for name in out["required"]
                if not (isinstance(properties.get(name), dict) and FILLED_FROM in properties[name])
            ]
        return out
    if isinstance(schema, list):
        return [as_sent_by_agencies(v) for v in schema]
    return schema


def payload_schema(ce_type: str, model: type[BaseModel]) -> JSON:
    """The JSON Schema of one type's payload model, as its writers must follow it."""
    schema = model.model_json_schema()
    return as_sent_by_agencies(schema) if sent_by_agencies(ce_type) else schema


def payload_schemas() -> dict[str, JSON]:
    """``<ce_type>.json`` → the JSON Schema of that type's payload model."""
    out: dict[str, JSON] = {}
    for ce_type, model in sorted(PAYLOADS.items()):
        schema = payload_schema(ce_type, model)
        schema["$schema"] = SCHEMA_DIALECT
        schema["$id"] = f"{SCHEMA_BASE_URL}{ce_type}.json"
        schema["title"] = ce_type
        schema["description"] = _payload_description(ce_type, model)
        out[f"{ce_type}.json"] = schema
    return out


# ----- AsyncAPI documents ---------------------------------------------------------------------


def _headers_schema(ce_type: str) -> JSON:
    """The CloudEvents binary-mode Kafka headers (shared.contracts.envelope)."""
    text: JSON = {"type": "string", "maxLength": 200}
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes in Kafka binary mode, one header each.",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": SPEC_VERSION},
            "ce_id": {**text, "minLength": 1, "description": "Unique per event (deduplication)."},
            "ce_source": {"type": "string", "minLength": 1, "maxLength": 500},
            "ce_type": {"type": "string", "const": ce_type},
            "ce_time": {"type": "string", "format": "date-time"},
            "ce_subject": {**text, "description": "What the event is about, e.g. a case id."},
            "content-type": {"type": "string", "const": CONTENT_TYPE},
            "ce_correlationid": {
                **text,
                "description": "The whole conversation, starting at the agency's submission.",
            },
            "ce_causationid": {**text, "description": "The id of the event that caused this one."},
            "ce_traceparent": {
                "type": "string",
                "pattern": r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C trace context.",
            },
            "ce_agencyid": {
                "type": "string",
                "maxLength": 64,
                "description": "The publishing agency, on inbound topics; must match the topic.",
            },
        },
    }


def _dead_letter_message() -> JSON:
    headers = {
        name: {"type": "string", "description": text}
        for name, text in (
            ("dlq_error", "Why the record could not be handled."),
            ("dlq_error_type", "The exception class."),
            ("dlq_consumer_group", "The consumer group that gave up."),
            ("dlq_original_topic", "Where the record came from."),
            ("dlq_original_partition", "Its partition."),
            ("dlq_original_offset", "Its offset."),
            ("dlq_failed_at", "When it was dead-lettered (ISO 8601)."),
        )
    }
    return {
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "summary": "A record its consumer could not handle: original key, value and headers, "
        "plus dlq_* headers.",
        "headers": {"type": "object", "properties": headers},
        "payload": {"description": "The original message value, unchanged."},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "original key"},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _channel_binding(spec: TopicSpec, family: TopicFamily | None) -> JSON:
    config: JSON = {}
    for name, value in spec.config().items():
        if name == "cleanup.policy":
            config[name] = value.split(",")
        else:
            config[name] = int(value) if value.lstrip("-").isdigit() else value
    binding: JSON = {
        "partitions": spec.partitions,
        "topicConfiguration": config,
        "bindingVersion": KAFKA_BINDING_VERSION,
    }
    if family is None:
        binding["topic"] = spec.name
    return binding


def _message_ids(spec: TopicSpec) -> list[str]:
    return [DEAD_LETTER] if _is_dead_letter(spec) else list(spec.payloads)


def _channel(address: str, spec: TopicSpec, family: TopicFamily | None) -> JSON:
    description = spec.description
    writer = "the agency named in the topic" if spec.owner is Owner.AGENCY else spec.owner.value
    description += f" Written by {writer}; key: {spec.key}."
    channel: JSON = {
        "address": address,
        "title": _display_name(spec, family),
        "description": description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in _message_ids(spec)},
        "bindings": {"kafka": _channel_binding(spec, family)},
    }
    if family is not None:
        channel["parameters"] = {
            _AGENCY_PARAM: {
                "description": f"The agency's id (pattern `{AGENCY_ID_PATTERN}`). Kafka ACLs "
                "on the `agency.<agency_id>.` names make it the proof of sender.",
            }
        }
    return channel


def _plan(view: Owner) -> list[tuple[str, str, TopicSpec, TopicFamily | None]]:
    """(action, channel id, spec, family) of what ``view`` sends and receives."""
    plan: list[tuple[str, str, TopicSpec, TopicFamily | None]] = []
    for channel_id, _, spec, family in _channels():
        if view is Owner.AGENCY:
            # An agency writes its own inbound families and reads its inbox, and the fixed
            # topics every agency reads (intake's submission keys).
            if family is None and Owner.AGENCY not in spec.consumers:
                continue
            if spec.owner is Owner.AGENCY:
                action = "send"
            elif Owner.AGENCY in spec.consumers:
                action = "receive"
            else:
                continue
        elif spec.owner is view:
            action = "send"  # includes the service's dead-letter topic
        elif view in spec.consumers:
            action = "receive"
        else:
            continue
        plan.append((action, channel_id, spec, family))
    return plan


def _operation(view: Owner, action: str, channel_id: str, spec: TopicSpec) -> JSON:
    operation: JSON = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{m}"} for m in _message_ids(spec)],
    }
    if action == "receive" and view in SERVICES:
        operation["bindings"] = {
            "kafka": {
                "groupId": {"type": "string", "enum": [view.value]},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        }
    return operation


def _message(ce_type: str, key: str, schema_ref: JSON) -> JSON:
    model = PAYLOADS[ce_type]
    message: JSON = {
        "name": ce_type,
        "title": model.__name__,
        "summary": _carried_on(ce_type),
        "contentType": CONTENT_TYPE,
        "headers": _headers_schema(ce_type),
        "payload": schema_ref,
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": key},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }
    if model.__doc__:
        message["description"] = model.__doc__.strip()
    return message


def _schemas(models: Iterable[type[BaseModel]]) -> tuple[dict[type[BaseModel], JSON], JSON]:
    """Refs to each model and the shared ``components.schemas`` (sub-models appear once)."""
    unique = sorted(set(models), key=lambda m: m.__name__)
    refs, top = models_json_schema(
        [(m, "validation") for m in unique], ref_template="#/components/schemas/{model}"
    )
    return {m: dict(refs[(m, "validation")]) for m in unique}, dict(top.get("$defs", {}))


_TITLES = {
    Owner.INTAKE: "intake service",
    Owner.REFERRAL: "referral service",
    Owner.NOTIFICATION: "notification service",
    Owner.EVIDENCE: "evidence service",
    Owner.AGENCY: "partner agency",
    Owner.OPERATORS: "operator tooling",
}
_DESCRIPTIONS = {
    Owner.AGENCY: "What a partner agency sends (its submissions, listings and responses, on its "
    "own `agency.<agency_id>.*` topics) and receives (its inbox, which only it may read).",
    Owner.OPERATORS: "Operator tooling (`refex platform register-agency`) maintains the agency "
    "registry.",
}


def asyncapi_document(view: Owner) -> JSON:
    """The AsyncAPI 3.0.0 document of one service, of partner agencies or of operators."""
    plan = _plan(view)
    all_channels = {cid: (address, spec, fam) for cid, address, spec, fam in _channels()}
    ce_types = sorted({t for _, _, spec, _ in plan for t in spec.payloads})
    refs, schemas = _schemas(PAYLOADS[t] for t in ce_types)
    if any(sent_by_agencies(t) for t in ce_types):
        # One component serves both directions here: the sender's rule is the looser.
        schemas = as_sent_by_agencies(schemas)
    keys = {t: spec.key for _, _, spec, _ in plan for t in spec.payloads}
    messages: JSON = {t: _message(t, keys[t], refs[PAYLOADS[t]]) for t in ce_types}
    if any(_is_dead_letter(spec) for _, _, spec, _ in plan):
        messages[DEAD_LETTER] = _dead_letter_message()
    description = _DESCRIPTIONS.get(
        view,
        f"Topics the {view.value} service writes (send) and consumes (receive, consumer group "
        f"`{view.value}`).",
    )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": f"urn:org:referralexchange:{view.value}",
        "info": {
            "title": f"Referral Exchange: {_TITLES[view]}",
            "version": "1.0.0",
            "description": description
            + " Every message is a CloudEvents 1.0 event in Kafka binary mode: `ce_*` headers, "
            "JSON value. Generated by `make contracts` from shared/contracts; do not edit.",
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": {
            cid: _channel(all_channels[cid][0], spec, family) for _, cid, spec, family in plan
        },
        "operations": {
            f"{action}-{cid}": _operation(view, action, cid, spec) for action, cid, spec, _ in plan
        },
        "components": {"messages": messages, "schemas": schemas},
    }


_VIEWS: dict[str, Owner] = {
    "intake": Owner.INTAKE,
    "referral": Owner.REFERRAL,
    "notification": Owner.NOTIFICATION,
    "evidence": Owner.EVIDENCE,
    "agencies": Owner.AGENCY,
    "operators": Owner.OPERATORS,
}


def asyncapi_documents() -> dict[str, JSON]:
    """``<view>.json`` → its AsyncAPI document."""
    return {f"{name}.json": asyncapi_document(view) for name, view in _VIEWS.items()}


# ----- writing --------------------------------------------------------------------------------


def openapi_documents() -> dict[str, JSON]:
    """``gateway.json`` → the OpenAPI document of the agency gateway's HTTP API (issue 20)."""
    from services.gateway.openapi import openapi_document

    return {"gateway.json": openapi_document()}


def write_contract_docs(root: Path) -> list[Path]:
    """Write docs/schemas, docs/asyncapi and docs/openapi under ``root``; drop stale ones."""
    written: list[Path] = []
    for folder, documents in (
        (root / SCHEMAS_DIR, payload_schemas()),
        (root / ASYNCAPI_DIR, asyncapi_documents()),
        (root / OPENAPI_DIR, openapi_documents()),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.json"):
            if stale.name not in documents:
                stale.unlink()
        for name, document in sorted(documents.items()):
            path = folder / name
            text = dumps(document)
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
            written.append(path)
    return written
