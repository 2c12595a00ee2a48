"""Is this valid FHIR R4? The fhir.resources model's verdict plus the checks it leaves out.

fhir.resources checks structure, but accepts "true" for a boolean, any token in a required binding, ids over 64
characters, empty strings and arrays, and nulls (docs/sources/codes.md §7, performance (a)). A walk over the JSON,
driven by the same models' element types, adds those checks, and the limits hostile input tests: strings over 1 MB,
numbers no double holds, narratives with script (narrative.py), ids and references that are path segments. Both sets
of issues carry a FHIRPath expression.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Final

from service.fhir import r4
from service.fhir.narrative import narrative_issues
from service.platform.errors import Issue

__all__ = ["validate_element", "validate_resource"]

MAX_DEPTH: Final = 64
MAX_ID_LENGTH: Final = 64
# FHIR decimals must fit an IEEE double; larger exponents are hostile, not clinical.
MAX_DECIMAL_EXPONENT: Final = 308
# No measurement has more significant digits; PostgreSQL's numeric, which stores them, refuses too many.
MAX_DECIMAL_DIGITS: Final = 64
# R4 datatypes: "strings SHALL NOT exceed 1MB (1024*1024 characters) in size" (base64Binary is not a string).
MAX_STRING_LENGTH: Final = 1024 * 1024
# "." and ".." match FHIR's id pattern, but in a URL they are path segments: never an id, always an attack.
_DOT_SEGMENTS: Final = frozenset({".", ".."})

# Required bindings whose code lists fhir.resources truncates (it ends them with '+').
_REQUIRED_CODES: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("Observation", "status"): frozenset(
        {
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
    ("RiskAssessment", "status"): frozenset(
        {
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
}

# Code lists fhir.resources carries that are not R4's required bindings: CapabilityStatement.format binds to
# MIME types (BCP 13), and Expression.language's binding is extensible.
_NOT_REQUIRED: Final = frozenset({("CapabilityStatement", "format"), ("Expression", "language")})

# Required bindings on CodeableConcepts: a coding from this system with one of these codes must be present.
_REQUIRED_CONCEPTS: Final[dict[tuple[str, str], tuple[str, frozenset[str]]]] = {
    ("Condition", "clinicalStatus"): (
        "http://terminology.hl7.org/CodeSystem/condition-clinical",
        frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"}),
    ),
    ("Condition", "verificationStatus"): (
        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        frozenset({"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}),
    ),
}


def validate_resource(resource: Any, path: str | None = None) -> list[Issue]:
    """Check one resource as FHIR R4 JSON.

    Args:
        resource: the parsed JSON of the resource.
        path: FHIRPath of the resource in its container (e.g. ``Bundle.entry[2].resource``); defaults to its type.

    Returns:
        Every issue found; empty when the resource is valid.
    """
    if not isinstance(resource, dict):
        return [Issue("structure", "a resource must be a JSON object", path)]
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        return [Issue("structure", "resourceType is missing", path)]
    if not r4.is_resource_type(resource_type):
        return [
            Issue(
                "not-supported",
                f"{resource_type!r} is not a FHIR R4 resource type",
                _join(path, "resourceType"),
            )
        ]
    base = path or resource_type
    issues: list[Issue] = []
    _walk_resource(resource_type, resource, base, issues, 0)
    return _with_model_errors(resource_type, resource, base, issues)


def validate_element(model_name: str, element: dict[str, Any], path: str) -> list[Issue]:
    """Check one element (a data type or backbone element such as ``BundleEntry``) as FHIR R4 JSON.

    Args:
        model_name: the element's model, e.g. ``BundleEntry``.
        element: its parsed JSON.
        path: its FHIRPath, e.g. ``Bundle.entry[3]``.

    Returns:
        Every issue found; empty when the element is valid.
    """
    issues: list[Issue] = []
    _walk(model_name, element, path, issues, 0)
    return _with_model_errors(model_name, element, path, issues)


def _with_model_errors(model_name: str, value: dict[str, Any], base: str, issues: list[Issue]) -> list[Issue]:
    seen = {issue.expression for issue in issues}
    for error in r4.validate_model(model_name, value):
        expression = _expression(base, error.loc)
        if expression in seen:
            continue
        seen.add(expression)
        issues.append(Issue(_issue_code(error.kind), error.message, expression))
    return issues


def _join(path: str | None, element: str) -> str:
    return f"{path}.{element}" if path else element


def _expression(base: str, loc: tuple[str | int, ...]) -> str:
    out = base
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _issue_code(kind: str) -> str:
    if kind == "extra_forbidden":
        return "structure"
    if kind.startswith("missing") or kind == "fhir-validation-required":
        return "required"
    return "value" if "type" in kind or kind.endswith("error") else "invalid"


def _walk_resource(resource_type: str, resource: dict[str, Any], path: str, issues: list[Issue], depth: int) -> None:
    resource_id = resource.get("id")
    if isinstance(resource_id, str) and len(resource_id) > MAX_ID_LENGTH:
        issues.append(Issue("value", f"id is longer than {MAX_ID_LENGTH} characters", f"{path}.id"))
    elif isinstance(resource_id, str) and resource_id in _DOT_SEGMENTS:
        issues.append(Issue("value", "an id cannot be '.' or '..'", f"{path}.id"))
    for (owner, element), (system, codes) in _REQUIRED_CONCEPTS.items():
        if owner == resource_type and isinstance(resource.get(element), dict):
            _check_required_concept(resource[element], system, codes, f"{path}.{element}", issues)
    _walk(resource_type, resource, path, issues, depth)


def _check_required_concept(
    concept: dict[str, Any], system: str, codes: frozenset[str], path: str, issues: list[Issue]
) -> None:
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return
    ours = [c for c in codings if isinstance(c, dict) and c.get("system") == system]
    if not ours:
        issues.append(Issue("code-invalid", f"a coding from {system} is required", path))
    for coding in ours:
        if coding.get("code") not in codes:
            allowed = " | ".join(sorted(codes))
            issues.append(Issue("code-invalid", f"code {coding.get('code')!r} is not one of {allowed}", path))


def _walk(model: str, obj: dict[str, Any], path: str, issues: list[Issue], depth: int) -> None:
    if depth > MAX_DEPTH:
        issues.append(Issue("too-costly", f"elements are nested more than {MAX_DEPTH} levels deep", path))
        return
    specs = r4.field_specs(model)
    for key, value in obj.items():
        spec = specs.get(key)
        if spec is None or spec.kind in ("extension", "any"):
            continue  # unknown elements are reported by the model; primitive extensions are checked there too
        where = f"{path}.{key}"
        if value is None:
            issues.append(Issue("structure", "null is not allowed here", where))
        elif spec.is_list:
            _walk_list(model, key, spec, value, obj, where, issues, depth)
        elif isinstance(value, list):
            issues.append(Issue("structure", "must be a single value, not an array", where))
        else:
            _check_value(model, key, spec, value, where, issues, depth)


def _walk_list(
    model: str,
    key: str,
    spec: r4.FieldSpec,
    value: Any,
    owner: dict[str, Any],
    where: str,
    issues: list[Issue],
    depth: int,
) -> None:
    if not isinstance(value, list):
        issues.append(Issue("structure", "must be an array", where))
        return
    if not value:
        issues.append(Issue("structure", "an array must not be empty", where))
        return
    extensions = owner.get(f"_{key}")
    for index, item in enumerate(value):
        item_path = f"{where}[{index}]"
        if item is None:
            # FHIR JSON allows null only to keep a primitive array aligned with its '_' extension array.
            if not (isinstance(extensions, list) and index < len(extensions) and extensions[index] is not None):
                issues.append(Issue("structure", "null is not allowed here", item_path))
            continue
        _check_value(model, key, spec, item, item_path, issues, depth)


def _check_value(
    model: str, key: str, spec: r4.FieldSpec, value: Any, where: str, issues: list[Issue], depth: int
) -> None:
    kind = spec.kind
    if kind == "bool":
        if not isinstance(value, bool):
            issues.append(Issue("value", "must be a JSON boolean (true or false)", where))
    elif kind == "int":
        if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
            issues.append(Issue("value", "integer is out of range", where))  # jsonio reads huge integers as Decimal
        elif isinstance(value, bool) or not isinstance(value, int):
            issues.append(Issue("value", "must be a JSON integer", where))
    elif kind == "decimal":
        _check_decimal(value, where, issues)
    elif kind in ("string", "binary"):
        _check_string(model, key, spec, value, where, issues)
    elif kind == "model":
        if not isinstance(value, dict):
            issues.append(Issue("structure", "must be a JSON object", where))
        elif not value:
            issues.append(Issue("structure", "an object must not be empty", where))
        elif spec.model is not None:
            _walk(spec.model, value, where, issues, depth + 1)
    elif kind == "resource":
        nested_type = value.get("resourceType") if isinstance(value, dict) else None
        if not isinstance(value, dict) or not isinstance(nested_type, str) or not r4.is_resource_type(nested_type):
            issues.append(Issue("structure", "must be a resource with a known resourceType", where))
        else:
            _walk_resource(nested_type, value, where, issues, depth + 1)


def _check_decimal(value: Any, where: str, issues: list[Issue]) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        issues.append(Issue("value", "must be a JSON number", where))
        return
    if isinstance(value, float):  # not from jsonio (it reads decimals exactly): a double has no excess digits
        if not math.isfinite(value):
            issues.append(Issue("value", "number is out of range", where))
        return
    number = value if isinstance(value, Decimal) else Decimal(value)
    if not number.is_finite() or abs(number.adjusted()) > MAX_DECIMAL_EXPONENT:
        issues.append(Issue("value", "number is out of range", where))
    elif len(number.as_tuple().digits) > MAX_DECIMAL_DIGITS:
        issues.append(Issue("value", f"number has more than {MAX_DECIMAL_DIGITS} digits", where))


def _check_string(model: str, key: str, spec: r4.FieldSpec, value: Any, where: str, issues: list[Issue]) -> None:
    if not isinstance(value, str):
        issues.append(Issue("value", "must be a JSON string", where))
        return
    if not value.strip():
        issues.append(Issue("value", "a string must not be empty", where))
        return
    if len(value) > MAX_STRING_LENGTH and spec.kind == "string":
        issues.append(Issue("too-long", f"a string must not exceed {MAX_STRING_LENGTH} characters (1 MB)", where))
        return
    if model == "Narrative" and key == "div":
        issues.extend(narrative_issues(value, where))
        return
    if model == "Reference" and key == "reference" and _DOT_SEGMENTS.intersection(value.split("/")):
        issues.append(Issue("value", "a reference cannot contain '.' or '..' segments", where))
        return
    codes = None if (model, key) in _NOT_REQUIRED else spec.enum or _REQUIRED_CODES.get((model, key))
    if codes is not None and value not in codes:
        allowed = " | ".join(sorted(codes))
        issues.append(Issue("code-invalid", f"code {value!r} is not one of {allowed}", where))
