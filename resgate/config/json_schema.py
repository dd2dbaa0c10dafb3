"""A JSON Schema of the gate config, generated from the typed model the parser builds (never written by hand).

Each section's properties, types and defaults come from the dataclass the parser returns for it
(:mod:`resgate.config.model`, :class:`~resgate.sections.kafka.KafkaSettings`) and each ``checks.<name>``
section from its checker's ``Thresholds`` (:data:`resgate.checks.registry.CHECKERS`); the names it accepts
(fault kinds, check names, a profile's overrides) are the parser's own constants. :data:`LAYOUT` only says
which dataclass each YAML section is. Editors use it for completion and early errors
(``# yaml-language-server: $schema=...``); the parser stays the judge: bounds, cross-field rules, a fault
kind's parameters and a checker's own keys are checked there (sections the schema cannot close are open).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from typing import Any, Union, get_args, get_origin, get_type_hints

from resgate.checks.registry import CHECKERS
from resgate.config import model
from resgate.config.profiles import FAULT_OVERRIDES, LOAD_OVERRIDES
from resgate.sections.kafka import KafkaSettings

SCHEMA_ID = "https://resgate.dev/schemas/gate-config.json"
SCHEMA_FILE = "gate.schema.json"
"""Where ``resgate init`` writes the schema, next to the config its ``$schema`` line names."""

_SCALAR = {"type": ["string", "number", "boolean"]}  # the parser's string lists and maps take any scalar
_NULL = {"type": "null"}


def _type(tp: Any, *, in_container: bool, depth: int, open_: bool) -> dict[str, Any]:
    """The JSON Schema of a type annotation; ``{}`` (anything) for a type JSON cannot name."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = (
            _type(rest[0], in_container=in_container, depth=depth, open_=open_)
            if len(rest) == 1
            else {"anyOf": [_type(a, in_container=in_container, depth=depth, open_=open_) for a in rest]}
        )
        return {"anyOf": [inner, _NULL]} if inner else {}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return dict(_SCALAR) if in_container else {"type": "string"}
    if origin in (list, tuple, frozenset, set, Sequence) or tp in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        out: dict[str, Any] = {"type": "array"}
        if len(items) == 1:
            out["items"] = _type(items[0], in_container=True, depth=depth + 1, open_=open_)
        return out
    if origin in (dict, Mapping):
        value = args[1] if len(args) == 2 else Any
        return {
            "type": "object",
            "additionalProperties": _type(value, in_container=True, depth=depth + 1, open_=open_),
        }
    if dataclasses.is_dataclass(tp):
        # A checker's nested classes are read by its own parser, whose keys may differ from the fields.
        if open_ and depth > 0:
            return {"type": "object"}
        return dataclass_schema(tp, open_=open_, depth=depth)
    return {}


def _default(f: dataclasses.Field[Any]) -> Any:
    value = f.default if f.default is not dataclasses.MISSING else dataclasses.MISSING
    if value is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    if isinstance(value, (frozenset, set, tuple)):
        value = sorted(value) if isinstance(value, (frozenset, set)) else list(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, dict)) and all(isinstance(x, (str, int, float, bool)) for x in value):
        return value
    return dataclasses.MISSING


def dataclass_schema(
    cls: Any,
    *,
    fields: Sequence[str] | None = None,
    open_: bool = False,
    depth: int = 0,
    extra: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The object schema of dataclass ``cls``: one property per field (or per name in ``fields``) with its
    type and default; fields without a default are required unless the section is ``open_`` (a checker's,
    whose own parser decides), which also allows keys the dataclass does not name."""
    hints = get_type_hints(cls)
    chosen = [f for f in dataclasses.fields(cls) if fields is None or f.name in fields]
    props: dict[str, Any] = {}
    required = []
    for f in chosen:
        prop = _type(hints[f.name], in_container=False, depth=depth + 1, open_=open_)
        default = _default(f)
        if default is not dataclasses.MISSING:
            prop = {**prop, "default": default}
        elif not open_:
            required.append(f.name)
        props[f.name] = prop
    props.update(extra or {})
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": open_}
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split())
    if required:
        out["required"] = required
    return out


def _name_pattern() -> dict[str, Any]:
    return {"type": "string", "pattern": model._NAME_RE.pattern}


def _target() -> dict[str, Any]:
    local = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "services": {"type": "array", "items": dataclass_schema(model.LocalService)},
            "setup": _type(get_type_hints(model.Target)["setup"], in_container=False, depth=1, open_=False),
        },
    }
    return dataclass_schema(
        model.Target,
        fields=("environment", "tags"),
        extra={"local": local, "aws": dataclass_schema(model.AwsTarget)},
    )


def _faults() -> dict[str, Any]:
    fault = dataclass_schema(
        model.Fault,
        fields=("name", "kind", "at_s", "target"),
        open_=True,
        extra={"kind": {"enum": list(model.FAULT_KINDS)}},
    )
    fault["required"] = ["kind", "at_s"]
    fault["description"] = "One scheduled fault; its kind's parameters are validated by the parser."
    return {"type": "array", "items": fault}


def _profiles() -> dict[str, Any]:
    load_hints = get_type_hints(model.Load)
    load = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            k: _type(load_hints[k], in_container=False, depth=1, open_=False) for k in LOAD_OVERRIDES
        },
    }
    fault_hints = get_type_hints(model.Fault)
    moved = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            k: _type(fault_hints[k], in_container=False, depth=1, open_=False) for k in FAULT_OVERRIDES
        },
    }
    profile = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "load": load,
            "faults": {"type": "array", "items": {"anyOf": [{"type": "string"}, moved]}},
        },
    }
    return {"type": "object", "additionalProperties": {"anyOf": [profile, _NULL]}}


def _checks() -> dict[str, Any]:
    props = {}
    for name, checker in CHECKERS.items():
        section = dataclass_schema(
            checker.Thresholds, open_=True, extra={"enabled": {"type": "boolean", "default": True}}
        )
        props[name] = {"anyOf": [section, {"const": False}, _NULL]}
    return {"type": "object", "additionalProperties": False, "properties": props}


LAYOUT: Mapping[str, Any] = {
    "gate": lambda: (
        dataclass_schema(
            model.GateConfig,
            fields=("name", "description", "allow_production", "unknown_is_failure"),
            extra={"name": _name_pattern()},
        )
        | {"required": ["name"]}
    ),
    "target": _target,
    "load": lambda: dataclass_schema(model.Load),
    "faults": _faults,
    "profiles": _profiles,
    "guardrails": lambda: dataclass_schema(model.Guardrails),
    "quiesce": lambda: dataclass_schema(model.Quiesce),
    "infra": lambda: dataclass_schema(model.Infra),
    "kafka": lambda: dataclass_schema(KafkaSettings),
    "checks": _checks,
    "evidence": lambda: dataclass_schema(model.Evidence),
}
"""Each top-level YAML section and how its schema is derived."""


def gate_config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a gate config file: ``{"$schema", "$id", "title", "type":
    "object", "required": ["gate", "target"], "properties": {<section>: ...}, "additionalProperties":
    false}``."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"ResilienceGate gate config (resgate {version('resgate')})",
        "type": "object",
        "required": ["gate", "target"],
        "additionalProperties": False,
        "properties": {name: build() for name, build in LAYOUT.items()},
    }
