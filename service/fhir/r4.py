"""The one module that imports fhir.resources: R4 JSON is read with its R4B models (docs/adr/0002).

fhir.resources defaults to R5, whose models reject or silently misread R4 medication, procedure and care-plan
JSON; R4B is element-for-element R4 for every type refracture reads or writes (docs/sources/codes.md §7).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError

__all__ = ["FieldSpec", "ModelError", "field_specs", "is_resource_type", "validate_model"]

FHIR_VERSION = "4.0.1"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What JSON a model's element takes: its primitive kind, or the nested model, and whether it repeats."""

    kind: str  # bool | int | decimal | string | binary | model | resource | extension | any
    is_list: bool
    model: str | None = None  # model name for kind == "model"
    enum: frozenset[str] | None = None  # complete code list of a required binding, when the model carries it


@dataclass(frozen=True, slots=True)
class ModelError:
    """One structural error found by the model: where (JSON keys and indices), what kind, and its message."""

    loc: tuple[str | int, ...]
    kind: str
    message: str


@cache
def _model(name: str) -> type[FHIRAbstractModel] | None:
    try:
        return get_fhir_model_class(name)
    except ValueError:
        return None


@cache
def is_resource_type(name: str) -> bool:
    """Whether FHIR (R4B models) defines a concrete resource type of this name."""
    model = _model(name)
    return model is not None and bool(model.has_resource_base()) and name not in ("Resource", "DomainResource")


def validate_model(resource_type: str, resource: dict[str, Any]) -> list[ModelError]:
    """Validate one resource with its fhir.resources model.

    Args:
        resource_type: the model to use (the resource's own ``resourceType``).
        resource: the resource as parsed JSON.

    Returns:
        The structural errors, empty when the model accepts the resource.
    """
    model = _model(resource_type)
    if model is None:
        return [ModelError(("resourceType",), "not-supported", f"unknown resource type {resource_type!r}")]
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return [
            ModelError(
                tuple("resourceType" if part == "resource_type" else part for part in err["loc"]),
                err["type"],
                _clean_message(err["msg"]),
            )
            for err in exc.errors(include_url=False)
        ]
    except (ValueError, TypeError, RecursionError) as exc:
        # fhir_core validators raise plain errors for some malformed shapes; report them as structure errors.
        return [ModelError((), "value_error", _clean_message(str(exc)))]
    return []


def _clean_message(message: str) -> str:
    return message.removeprefix("Value error, ")


@cache
def field_specs(model_name: str) -> dict[str, FieldSpec]:
    """The JSON shape of each element of a model, keyed by its JSON name.

    Args:
        model_name: a resource or data type name, e.g. ``Observation`` or ``Quantity``.

    Returns:
        JSON name → FieldSpec; empty for an unknown model.
    """
    model = _model(model_name)
    if model is None:
        return {}
    specs: dict[str, FieldSpec] = {}
    for field in model.model_fields.values():
        alias = field.alias
        if alias is None or alias == "fhir_comments":
            continue
        if alias.startswith("_"):
            specs[alias] = FieldSpec("extension", _is_list(field.annotation))
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        enum_values = extra.get("enum_values")
        enum = (
            frozenset(str(v) for v in enum_values)
            if isinstance(enum_values, list) and enum_values and enum_values[-1] != "+"
            else None
        )
        kind, nested = _kind(field.annotation)
        specs[alias] = FieldSpec(kind, _is_list(field.annotation), nested, enum)
    return specs


def _strip(annotation: Any) -> list[Any]:
    """The concrete types under Optional/Union/List/Annotated wrappers."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return [annotation]
    if origin in (typing.Union, list, typing.List) or str(origin) == "<class 'types.UnionType'>":  # noqa: UP006
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            out.extend(_strip(arg))
        return out
    return [annotation]


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, typing.List):  # noqa: UP006
        return True
    if origin is typing.Annotated:
        return False
    return any(_is_list(arg) for arg in typing.get_args(annotation) if arg is not type(None))


_PRIMITIVE_KINDS = {bool: "bool", int: "int"}


def _kind(annotation: Any) -> tuple[str, str | None]:
    for concrete in _strip(annotation):
        if typing.get_origin(concrete) is typing.Annotated:
            base = typing.get_args(concrete)[0]
            if base is bool:
                return "bool", None
            if base is int:
                return "int", None
            if getattr(base, "__name__", "") == "Decimal":
                return "decimal", None
            if base is bytes:
                return "binary", None  # base64Binary: a string in JSON, but not held to a string's 1 MB limit
            return "string", None
        if concrete in _PRIMITIVE_KINDS:
            return _PRIMITIVE_KINDS[concrete], None
        klass = getattr(concrete, "get_model_klass", None)
        if klass is not None:
            name = klass().__name__
            if name in ("Resource", "DomainResource"):
                return "resource", None
            if name == "FHIRPrimitiveExtension":
                return "extension", None
            return "model", name
        if concrete is str:
            return "string", None
    return "any", None
