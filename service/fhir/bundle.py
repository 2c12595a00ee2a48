"""Transaction and batch Bundles: check the envelope, plan each entry, resolve urn:uuid references."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from service.fhir import r4
from service.fhir.intake import Ids, admit
from service.fhir.resource_types import INPUT_TYPES
from service.fhir.validation import validate_element, validate_resource
from service.platform.errors import Issue, Problem, RefractureError

__all__ = ["EntryPlan", "PlannedBundle", "RefusedTransaction", "plan_bundle", "skip_notice", "skip_summary"]

_TYPE_URL: Final = re.compile(r"^([A-Z][A-Za-z]+)/?$")
_INSTANCE_URL: Final = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
# The type a request.url is about: "Encounter", "Encounter/1", "Practitioner?identifier=…".
_URL_TYPE: Final = re.compile(r"^([A-Z][A-Za-z]+)(?:[/?]|$)")
_ID: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_PLACEHOLDER: Final = ("urn:uuid:", "urn:oid:")
_TAKES: Final = ", ".join(sorted(INPUT_TYPES))
# A Bundle inside a Bundle is an envelope, not data refracture could skip unread: refused as before (422).
_NOT_SKIPPED: Final = INPUT_TYPES | {"Bundle"}


@dataclass(slots=True)
class EntryPlan:
    """One entry of a Bundle, checked: what to do, on which resource, or why it cannot be done."""

    index: int
    method: str  # POST | PUT | GET
    resource_type: str
    resource_id: str | None
    resource: dict[str, Any] | None
    full_url: str | None = None
    if_match: str | None = None
    error: RefractureError | None = None
    # A write of a FHIR type refracture does not use (Encounter, Claim …): skipped unless the site refuses them.
    unused: bool = False

    @property
    def skipped(self) -> bool:
        """Acknowledged and not stored: an unused type, and nothing else wrong with the entry."""
        return self.unused and self.error is None


class RefusedTransaction(RefractureError):
    """A transaction refused whole for its entries' problems; the entries it would have written, by type."""

    def __init__(self, refused: RefractureError, plans: list[EntryPlan]) -> None:
        super().__init__(refused.problem, refused.issues, refused.headers)
        self.written_types = [p.resource_type for p in plans if p.method != "GET" and not p.skipped]


@dataclass(slots=True)
class PlannedBundle:
    """A checked Bundle: its type and its entries in request order."""

    bundle_type: str
    entries: list[EntryPlan]

    def skipped_types(self) -> Counter[str]:
        """How many entries of each type were skipped."""
        return Counter(e.resource_type for e in self.entries if e.skipped)


def plan_bundle(bundle: Any, max_entries: int, skip_unused: bool = True) -> PlannedBundle:
    """Check a transaction or batch Bundle and plan its entries.

    A transaction fails as a whole on the first problem of any entry (all issues are reported together);
    a batch keeps going and records each entry's problem on that entry.

    Entries that write a FHIR type refracture does not use are skipped (not validated, not stored; references to
    them never break an entry that is kept), or refused with ``skip_unused=False``
    (REFRACTURE_UNKNOWN_RESOURCE_TYPES=error).

    Args:
        bundle: the parsed request body.
        max_entries: the most entries accepted.
        skip_unused: skip entries of types refracture does not use, rather than refuse them.

    Returns:
        The planned Bundle; in a transaction, urn:uuid references are rewritten to the ids assigned.

    Raises:
        RefractureError: the envelope is not a valid transaction or batch Bundle, or (transaction) an entry is bad.
    """
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise RefractureError(Problem.INVALID, [Issue("structure", "POST /fhir takes a Bundle", "Bundle")])
    entries = bundle.get("entry")
    if isinstance(entries, list) and len(entries) > max_entries:
        raise RefractureError(
            Problem.TOO_LARGE,
            [
                Issue(
                    "too-costly",
                    f"the Bundle has {len(entries)} entries; the limit is {max_entries}",
                    "Bundle.entry",
                )
            ],
        )
    envelope_issues = _envelope_issues(bundle)
    if envelope_issues:
        raise RefractureError(Problem.INVALID, envelope_issues)
    bundle_type = bundle.get("type")
    if bundle_type not in ("transaction", "batch"):
        raise RefractureError(
            Problem.UNPROCESSABLE,
            [
                Issue(
                    "not-supported",
                    f"Bundle.type must be transaction or batch, not {bundle_type!r}",
                    "Bundle.type",
                )
            ],
        )
    plans = [_plan_entry(i, e, skip_unused) for i, e in enumerate(entries or [])]
    if bundle_type == "transaction":
        try:
            _check_transaction(plans)
        except RefractureError as exc:
            raise RefusedTransaction(exc, plans) from None
    else:
        _check_batch_references(plans)
    return PlannedBundle(str(bundle_type), plans)


def _envelope_issues(bundle: dict[str, Any]) -> list[Issue]:
    # The Bundle without its entries, then each entry without its resource: the resources are checked one by one
    # as they are planned, so a 1,000-entry Bundle is not validated twice.
    entries = bundle.get("entry")
    issues = validate_resource({k: v for k, v in bundle.items() if k != "entry"}, "Bundle")
    if entries is None:
        return issues
    if not isinstance(entries, list) or not entries:
        return [*issues, Issue("structure", "entry must be a non-empty array", "Bundle.entry")]
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            issues.append(Issue("structure", "an entry must be a JSON object", f"Bundle.entry[{index}]"))
            continue
        bare = {k: v for k, v in entry.items() if k != "resource"}
        issues += validate_element("BundleEntry", bare, f"Bundle.entry[{index}]")
    return issues


def _fail(index: int, problem: Problem, code: str, text: str, element: str = "") -> RefractureError:
    return RefractureError(problem, [Issue(code, text, f"Bundle.entry[{index}]{element}")])


def _plan_entry(index: int, entry: dict[str, Any], skip_unused: bool) -> EntryPlan:
    request = entry.get("request") or {}
    method = str(request.get("method") or "")
    url = str(request.get("url") or "").strip()
    resource = entry.get("resource")
    plan = EntryPlan(
        index,
        method,
        "",
        None,
        resource if isinstance(resource, dict) else None,
        entry.get("fullUrl"),
        request.get("ifMatch"),
    )
    if not method or not url:
        plan.error = _fail(
            index, Problem.INVALID, "required", "request.method and request.url are required", ".request"
        )
    elif method == "GET":
        match = _INSTANCE_URL.match(url)
        if "resource" in entry:
            # A read sends nothing: a body here could only mislead (e.g. name another patient for the audit trail).
            plan.error = _fail(index, Problem.INVALID, "invalid", "GET entries carry no resource", ".resource")
        elif match is None:
            plan.error = _fail(
                index,
                Problem.UNPROCESSABLE,
                "not-supported",
                "GET entries must read one resource (Type/id)",
                ".request.url",
            )
        else:
            plan.resource_type, plan.resource_id = match.group(1), match.group(2)
    elif method in ("POST", "PUT"):
        if not _plan_unused(plan, url, skip_unused):
            _plan_write(plan, url, request)
    else:
        plan.error = _fail(
            index,
            Problem.NOT_ALLOWED,
            "not-supported",
            f"{method} is not supported in Bundle entries (POST, PUT and GET are)",
            ".request.method",
        )
    return plan


def _plan_unused(plan: EntryPlan, url: str, skip_unused: bool) -> bool:
    """Plan a write of a type refracture does not use; False when the entry is not one (or its request.url is
    about another type, which the ordinary checks then report)."""
    resource = plan.resource
    resource_type = resource.get("resourceType") if resource is not None else None
    if not isinstance(resource_type, str) or resource_type in _NOT_SKIPPED or not r4.is_resource_type(resource_type):
        return False
    url_type = _URL_TYPE.match(url)
    if url_type is None or url_type.group(1) != resource_type:
        return False
    plan.unused = True
    plan.resource_type = resource_type
    if not skip_unused:
        plan.error = _fail(
            plan.index,
            Problem.UNPROCESSABLE,
            "not-supported",
            f"refracture does not take {resource_type} resources (it takes {_TAKES}), and this server is set to "
            "refuse them (REFRACTURE_UNKNOWN_RESOURCE_TYPES=error): leave such entries out of the Bundle",
            ".resource.resourceType",
        )
        return True
    # Not validated: nothing of it is stored. Its id (the EHR's) only serves references to it from kept entries,
    # so one that could not make a reference ("..", "a/b") is as good as none.
    assert resource is not None
    instance = _INSTANCE_URL.match(url) if plan.method == "PUT" else None
    resource_id = instance.group(2) if instance else resource.get("id")
    usable = isinstance(resource_id, str) and _ID.match(resource_id) and resource_id not in (".", "..")
    plan.resource_id = resource_id if usable else None
    return True


def skip_notice(plan: EntryPlan) -> Issue:
    """The information issue of one skipped entry's response."""
    return Issue(
        "informational",
        f"not stored: refracture does not use {plan.resource_type} resources; the entry was acknowledged and skipped",
        f"Bundle.entry[{plan.index}].resource.resourceType",
        severity="information",
    )


def skip_summary(counts: Counter[str]) -> Issue:
    """The one information issue that counts a Bundle's skipped entries by type."""
    total = sum(counts.values())
    return Issue(
        "informational",
        f"{_entries(total, 'has', 'have')} a type refracture does not use and {'was' if total == 1 else 'were'} "
        f"skipped, not stored: {_by_type(counts)} (refracture takes {_TAKES})",
        "Bundle.entry",
        severity="information",
    )


def _entries(n: int, one: str, many: str) -> str:
    return f"1 entry {one}" if n == 1 else f"{n} entries {many}"


def _by_type(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {t}" for t, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _plan_write(plan: EntryPlan, url: str, request: dict[str, Any]) -> None:
    index = plan.index
    resource = plan.resource
    if resource is None:
        plan.error = _fail(index, Problem.INVALID, "required", f"a {plan.method} entry needs a resource", ".resource")
        return
    if "?" in url or request.get("ifNoneExist") or request.get("ifNoneMatch"):
        plan.error = _fail(
            index,
            Problem.UNPROCESSABLE,
            "not-supported",
            "conditional create and update are not supported: send the resource with the EHR's id",
            ".request",
        )
        return
    resource_type = resource.get("resourceType")
    match = (_TYPE_URL if plan.method == "POST" else _INSTANCE_URL).match(url)
    if match is None:
        expected = "Type" if plan.method == "POST" else "Type/id"
        plan.error = _fail(
            index,
            Problem.INVALID,
            "invalid",
            f"request.url of a {plan.method} must be {expected}",
            ".request.url",
        )
        return
    if match.group(1) != resource_type:
        plan.error = _fail(
            index,
            Problem.INVALID,
            "invalid",
            f"request.url names {match.group(1)} but the resource is {resource_type!r}",
            ".request.url",
        )
        return
    plan.resource_type = match.group(1)  # counted under its type even when refused, as the API counts it
    ids, url_id = (Ids.URL_OR_NONE, match.group(2)) if plan.method == "PUT" else (Ids.OWN_OR_NEW, None)
    try:
        admitted = admit(resource, ids, url_id=url_id, path=f"Bundle.entry[{index}].resource")
    except RefractureError as exc:
        plan.error = exc
        return
    plan.resource_type, plan.resource_id = admitted.resource_type, admitted.resource_id


def _check_transaction(plans: list[EntryPlan]) -> None:
    issues: list[Issue] = []
    problems: set[Problem] = set()
    for plan in plans:
        if plan.error is not None:
            issues.extend(plan.error.issues)
            problems.add(plan.error.problem)
    refused = Counter(plan.resource_type for plan in plans if plan.unused and plan.error is not None)
    if refused:
        # Before the entries' own issues, which the OperationOutcome cuts off after the first hundred.
        issues.insert(
            0,
            Issue(
                "not-supported",
                f"{_entries(sum(refused.values()), 'has', 'have')} a type refracture does not take: "
                f"{_by_type(refused)}; "
                "this server refuses them (REFRACTURE_UNKNOWN_RESOURCE_TYPES=error): leave them out of the Bundle",
                "Bundle.entry",
            ),
        )
    seen: dict[tuple[str, str | None], int] = {}
    for plan in plans:
        if plan.error is None and not plan.unused and plan.method in ("POST", "PUT"):
            key = (plan.resource_type, plan.resource_id)
            if key in seen:
                issues.append(
                    Issue(
                        "duplicate",
                        f"{key[0]}/{key[1]} is written by entries {seen[key]} and {plan.index}",
                        f"Bundle.entry[{plan.index}]",
                    )
                )
                problems.add(Problem.INVALID)
            seen[key] = plan.index
    if not issues:
        issues = _rewrite_placeholders(plans)
        if issues:
            problems.add(Problem.UNPROCESSABLE)
    if issues:
        # Malformed beats unprocessable: fix the FHIR first, then the business rule.
        order = [Problem.TOO_LARGE, Problem.INVALID, Problem.NOT_ALLOWED, Problem.UNPROCESSABLE]
        problem = next((p for p in order if p in problems), Problem.INVALID)
        raise RefractureError(problem, issues)


def _check_batch_references(plans: list[EntryPlan]) -> None:
    # Batch entries stand alone (FHIR R4 http.html): a placeholder can only point into a transaction. A reference
    # to an entry of a type refracture does not use is data refracture does not use either: left as received.
    unused: dict[str, str | None] = {
        plan.full_url: None for plan in plans if plan.unused and isinstance(plan.full_url, str)
    }
    for plan in plans:
        if plan.error is None and not plan.unused and plan.resource is not None and plan.method in ("POST", "PUT"):
            issues: list[Issue] = []
            _rewrite(plan.resource, unused, f"Bundle.entry[{plan.index}].resource", issues)
            if issues:
                plan.error = RefractureError(Problem.UNPROCESSABLE, issues)


def _rewrite_placeholders(plans: list[EntryPlan]) -> list[Issue]:
    # One dict of every placeholder, then one walk of each kept resource: linear in the Bundle's size.
    targets: dict[str, str | None] = {}
    for plan in plans:
        if plan.method in ("POST", "PUT") and isinstance(plan.full_url, str) and plan.full_url.startswith(_PLACEHOLDER):
            # A skipped entry is named like a kept one, by the EHR's type and id, so the reference still says which
            # of the EHR's resources it meant; without an id it stays the placeholder it was.
            known = plan.resource_id is not None
            targets[plan.full_url] = f"{plan.resource_type}/{plan.resource_id}" if known else None
    issues: list[Issue] = []
    for plan in plans:
        if plan.resource is not None and not plan.unused and plan.method in ("POST", "PUT"):
            _rewrite(plan.resource, targets, f"Bundle.entry[{plan.index}].resource", issues)
    return issues


def _rewrite(node: Any, targets: dict[str, str | None], path: str, issues: list[Issue]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value.startswith(_PLACEHOLDER):
                if value in targets:
                    target = targets[value]
                    if target is not None:
                        node[key] = target
                else:
                    issues.append(
                        Issue(
                            "not-found",
                            f"{value} is not the fullUrl of any entry in this Bundle "
                            "(placeholders resolve only within a transaction)",
                            f"{path}.reference",
                        )
                    )
            elif isinstance(value, dict | list):
                _rewrite(value, targets, f"{path}.{key}", issues)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _rewrite(item, targets, f"{path}[{index}]", issues)
