"""The EHR's Subscription notifications: ``/fhir/$subscription-hook/{subscription_id}`` (thin: authenticate, read,
hand to the receiver in a thread, acknowledge).

Under the FHIR base, so FHIR's media types, body limit and OperationOutcome errors apply; the ``$`` keeps the path
apart from every resource type (types start with a capital letter).
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from service.entrypoints.api.auth import BearerDep, CallersDep, forbidden
from service.entrypoints.api.body import read_body
from service.entrypoints.api.deps import (
    ClockDep,
    FeedSecretsDep,
    NotificationsDep,
    QueueDep,
    RateLimiterDep,
    RelayDep,
    SettingsDep,
)
from service.entrypoints.api.middleware import AuditNote, note_audit
from service.entrypoints.api.responses import FhirJSONResponse, fhir_response
from service.fhir.jsonio import parse
from service.fhir.outcome import operation_outcome
from service.fhir.references import patient_of
from service.fhir.resource_types import INPUT_TYPES
from service.fhir.subscriptions import NotificationError, is_notification_bundle, parse_notification
from service.platform.config import Settings
from service.platform.errors import Issue, Problem, RefractureError, refuse
from service.security.principal import Permission, Principal
from service.usecases.ports.clock import Clock
from service.usecases.ports.queue import TaskQueue
from service.usecases.ports.reads import FeedSecrets
from service.usecases.relay import Relay
from service.usecases.subscribe import secret_hash
from service.usecases.subscriptions import NotificationReceiver, Receipt
from service.usecases.task_names import TASK_SUBSCRIPTION_WORK

__all__ = ["router"]

router = APIRouter(prefix="/fhir/$subscription-hook", tags=["Subscriptions"])
# A Task of refracture's changed at the EHR moves its alert (usecases/task_sync.py): taking one from a notification's
# body needs the scope to write Task, as the input types need theirs.
_WRITTEN_TYPES = INPUT_TYPES | {"Task"}

_FEED = Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="The feed's name (REFRACTURE_SUBSCRIPTION_FEED)")
_TYPE = Path(pattern=r"^[A-Z][A-Za-z]{1,63}$", description="A FHIR resource type")
_ID = Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="A FHIR logical id")
_OPTIONAL_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/fhir+json": {"schema": {"type": "object", "additionalProperties": True}},
            "application/json": {"schema": {"type": "object", "additionalProperties": True}},
        },
    }
}
_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/fhir+json": {}}}
    for code, text in {
        400: "Not JSON, not valid FHIR R4, or not a notification (OperationOutcome)",
        401: "Neither the Subscription's header secret nor a valid access token (OperationOutcome)",
        404: "A resource type refracture does not take (OperationOutcome)",
        413: "Body too large (OperationOutcome)",
        415: "Not application/fhir+json (OperationOutcome)",
        503: "Database unavailable; send it again (OperationOutcome)",
    }.items()
}


async def notifier(
    request: Request,
    settings: SettingsDep,
    rate_limiter: RateLimiterDep,
    feed_secrets: FeedSecretsDep,
    clock: ClockDep,
    callers: CallersDep,
    credentials: BearerDep,
) -> Principal:
    """The EHR's notification sender: the Subscription's header secret (compared in constant time), or an
    integration client's bearer token.

    Raises:
        RefractureError: 401 without either; 403 for a token whose role may not write clinical data.
    """
    presented = request.headers.get(settings.subscription_header)
    if presented is not None and await _secret_matches(settings, feed_secrets, clock, presented):
        # The secret grants notification handling only: no role (no other route accepts it), resources it
        # carries are not stored but read back from the EHR (_notification_only), and it is rate limited.
        principal = Principal(
            subject=f"ehr-subscription:{settings.subscription_feed}",
            roles=frozenset(),
            kind="system",
            source=_SECRET_SOURCE,
        )
        request.state.principal = principal
        wait = await run_in_threadpool(rate_limiter.allow, f"client:{principal.subject}")
        if wait is not None:
            raise RefractureError(
                Problem.TOO_MANY_REQUESTS,
                [Issue("throttled", f"more than {rate_limiter.per_minute} requests a minute; slow down")],
                {"Retry-After": str(int(wait))},
            )
        return principal
    principal = await callers.identify(request, credentials)
    if not principal.may(Permission.WRITE_CLINICAL_DATA):
        raise forbidden("notifications need the write-clinical-data permission, which your role does not have")
    return principal


async def _secret_matches(settings: Settings, feed_secrets: FeedSecrets, clock: Clock, presented: str) -> bool:
    """The feed's secret as `refracture subscribe` last made it (or the one it replaced, for a grace period); the
    configured REFRACTURE_SUBSCRIPTION_SECRET only while subscribe has never run (Subscriptions made by hand)."""
    value = presented.strip()
    if settings.subscription_header.lower() == "authorization":
        scheme, _, value = value.partition(" ")
        if scheme.lower() != "bearer":
            return False
        value = value.strip()
    if not value or len(value) > 512:
        return False
    feed = settings.subscription_feed
    stored = await run_in_threadpool(feed_secrets.accepted, feed, clock())
    if stored is not None:
        digest = secret_hash(value)
        return any(hmac.compare_digest(digest, known) for known in stored)
    if settings.subscription_secret is None:
        return False
    return hmac.compare_digest(value.encode(), settings.subscription_secret.get_secret_value().encode())


Notifier = Annotated[Principal, Depends(notifier)]
_SECRET_SOURCE = "subscription-secret"  # noqa: S105 - how the caller authenticated, not a secret  # nosec B105


def _notification_only(principal: Principal) -> bool:
    """A caller with the Subscription's shared secret: it may say what changed, not what the data is."""
    return principal.source == _SECRET_SOURCE


def _known_feed(settings: Settings, feed_id: str) -> None:
    # Only the configured feed: an unknown id gets 404 and leaves no row behind.
    if feed_id != settings.subscription_feed:
        raise refuse(Problem.NOT_FOUND, "not-found", "no such feed")


@dataclasses.dataclass(frozen=True, slots=True)
class Inbox:
    """What a notification goes through: the receiver, then the doorbells (patients changed; feed work queued)."""

    notifications: NotificationReceiver
    relay: Relay
    queue: TaskQueue


async def _inbox(notifications: NotificationsDep, relay: RelayDep, queue: QueueDep) -> Inbox:
    return Inbox(notifications, relay, queue)


InboxDep = Annotated[Inbox, Depends(_inbox)]


def _acknowledge(inbox: Inbox, background: BackgroundTasks, receipt: Receipt) -> FhirJSONResponse:
    if receipt.changed_patients:
        background.add_task(inbox.relay.ring, receipt.changed_patients)
    if receipt.work_queued:
        background.add_task(_ring_feed_worker, inbox.queue)
    text = (
        f"{receipt.kind}: {receipt.ingested} stored, {receipt.refused} refused, {receipt.duplicates} duplicate "
        f"event(s), {receipt.fetches} to fetch{', catch-up poll requested' if receipt.catchup else ''}"
    )
    return fhir_response(operation_outcome([Issue("informational", text, severity="information")]), 200)


def _ring_feed_worker(queue: TaskQueue) -> None:
    # After the response, best effort: the rows are committed, and beat runs the work anyway.
    try:
        queue.send(TASK_SUBSCRIPTION_WORK, [])
    except Exception:  # noqa: BLE001 - a broker failure must not surface: PostgreSQL holds the work
        return


@router.post(
    "/{subscription_id}",
    operation_id="subscriptionNotification",
    response_class=FhirJSONResponse,
    openapi_extra=_OPTIONAL_BODY,
    responses=_RESPONSES,
    summary="Receive a Subscription notification",
)
async def notification(
    request: Request,
    settings: SettingsDep,
    inbox: InboxDep,
    background: BackgroundTasks,
    principal: Notifier,
    subscription_id: Annotated[str, _FEED],
) -> FhirJSONResponse:
    """An R4 rest-hook notification without payload (something changed: refracture re-reads by ``_lastUpdated``),
    a topic-based notification Bundle (handshake, heartbeat, event-notification; R4B/R5 SubscriptionStatus or the
    R4 backport's Parameters), or a single resource (servers that POST the payload)."""
    _known_feed(settings, subscription_id)
    raw = await read_body(request, settings.max_body_bytes)
    if not raw.strip():
        note_audit(request.state, AuditNote("notification", detail="ping"))
        receipt = await run_in_threadpool(inbox.notifications.ping, subscription_id)
        return _acknowledge(inbox, background, receipt)
    _check_media_type(request)
    body = await run_in_threadpool(parse, raw)
    if not isinstance(body, dict):
        raise refuse(Problem.MALFORMED, "structure", "the body must be a JSON object")
    if is_notification_bundle(body):
        try:
            parsed = parse_notification(body)
        except NotificationError as exc:
            raise refuse(Problem.INVALID, "structure", str(exc)) from None
        types = {e.focus[0] for e in parsed.events if e.focus} | {key[0] for key in parsed.resources}
        # The patients the notification names: those of the resources it carried (even when they are only
        # announced and read back from the EHR), and whose records changed.
        named = {p for resource in parsed.resources.values() if (p := patient_of(resource))}
        if _notification_only(principal):
            parsed = dataclasses.replace(parsed, resources={})  # announced: read from the EHR, not taken from here
        for resource_type in sorted(types & _WRITTEN_TYPES):
            _may_write(principal, resource_type)
        note = AuditNote("notification", detail=parsed.kind, patients=sorted(named))
        note_audit(request.state, note)
        receipt = await run_in_threadpool(inbox.notifications.notification, subscription_id, parsed)
        note.patients = sorted(named | set(receipt.changed_patients))
        return _acknowledge(inbox, background, receipt)
    kind, given_id = body.get("resourceType"), body.get("id")
    if not isinstance(kind, str) or kind == "Bundle" or not isinstance(given_id, str):
        raise refuse(
            Problem.UNPROCESSABLE,
            "not-supported",
            "a notification is empty, a notification Bundle (history or subscription-notification with a "
            "SubscriptionStatus or Parameters first), or one resource with its id",
        )
    return await _resource(request, inbox, background, principal, subscription_id, kind, given_id, body)


@router.put(
    "/{subscription_id}/{resource_type}/{resource_id}",
    operation_id="subscriptionUpdate",
    response_class=FhirJSONResponse,
    openapi_extra=_OPTIONAL_BODY,
    responses=_RESPONSES,
    summary="Receive an R4 rest-hook update",
)
async def update(
    request: Request,
    settings: SettingsDep,
    inbox: InboxDep,
    background: BackgroundTasks,
    principal: Notifier,
    subscription_id: Annotated[str, _FEED],
    resource_type: Annotated[str, _TYPE],
    resource_id: Annotated[str, _ID],
) -> FhirJSONResponse:
    """R4 rest-hook with payload: the EHR PUTs the resource to ``{endpoint}/{type}/{id}``; without a body (id only),
    refracture reads the resource from the EHR in a worker."""
    _known_feed(settings, subscription_id)
    raw = await read_body(request, settings.max_body_bytes)
    body: dict[str, Any] | None = None
    if raw.strip():
        _check_media_type(request)
        parsed = await run_in_threadpool(parse, raw)
        if not isinstance(parsed, dict):
            raise refuse(Problem.MALFORMED, "structure", "the body must be a JSON object")
        body = parsed
    return await _resource(request, inbox, background, principal, subscription_id, resource_type, resource_id, body)


async def _resource(
    request: Request,
    inbox: Inbox,
    background: BackgroundTasks,
    principal: Principal,
    feed_id: str,
    resource_type: str,
    resource_id: str,
    body: dict[str, Any] | None,
) -> FhirJSONResponse:
    if resource_type in _WRITTEN_TYPES:
        _may_write(principal, resource_type)
    if _notification_only(principal):
        body = None  # the resource is read from the EHR by a worker, not taken from the notification
    note_audit(request.state, AuditNote("notification", resource_type, resource_id))
    receipt = await run_in_threadpool(inbox.notifications.resource, feed_id, resource_type, resource_id, body)
    note = request.state.audit
    note.patients = receipt.changed_patients
    return _acknowledge(inbox, background, receipt)


def _check_media_type(request: Request) -> None:
    # The body may be empty (a ping, an id-only update), so it is read first and its media type checked after.
    media_type, _, params = request.headers.get("content-type", "").partition(";")
    if media_type.strip().lower() not in _MEDIA_TYPES:
        raise refuse(Problem.UNSUPPORTED_MEDIA, "not-supported", "Content-Type must be application/fhir+json")
    charset = [p.partition("=")[2].strip().strip('"').lower() for p in params.split(";") if "charset" in p.lower()]
    if charset and charset[0] not in ("utf-8", "utf8"):
        raise refuse(Problem.UNSUPPORTED_MEDIA, "not-supported", "FHIR JSON must be UTF-8")


def _may_write(principal: Principal, resource_type: str) -> None:
    if _notification_only(principal):
        return  # nothing is written from its body: announced resources are fetched
    if not principal.may_write(resource_type):
        raise forbidden(f"your scopes do not allow writing {resource_type}")
