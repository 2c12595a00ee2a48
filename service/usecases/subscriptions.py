"""Event feeds from the EHR: Subscription notifications received, resources fetched, missed changes caught up.

Notifications are hints, not a ledger (hapi-fhir#6002: rest-hooks give up after about a minute). So:

- a notification is acknowledged quickly: resources it carries are ingested at once (the Ingestor makes no new
  version of identical content, so duplicates are harmless); what must be fetched becomes a ``subscription_fetch``
  row and what must be re-read a catch-up request, both durable in PostgreSQL, with Redis only ringing the bell;
- topic-based notifications are numbered: duplicates are skipped, and a gap (or silence past the heartbeat period)
  asks for a catch-up poll (service/domain/event_feed.py);
- a periodic ``_lastUpdated`` poll per resource type, from a high-water mark kept in PostgreSQL, catches whatever
  no notification announced.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

from service.domain.audit_record import AuditRecord
from service.domain.backoff import RetryPolicy
from service.domain.event_feed import advance
from service.fhir.intake import Admitted, Ids, admit
from service.fhir.jsonio import parse
from service.fhir.references import patient_of
from service.fhir.resource_types import INPUT_TYPES
from service.fhir.subscriptions import Notification
from service.fhir.validation import validate_resource
from service.platform.errors import EhrError, EhrRejected, EhrTemporaryError, Problem, RefractureError, refuse
from service.usecases.audit import system_record
from service.usecases.ingest import EntryOutcome, Ingestor, WriteRequest
from service.usecases.intake import IntakeCounter
from service.usecases.ports.clock import Clock
from service.usecases.ports.ehr import EhrAnswer, EhrGateway
from service.usecases.ports.feeds import FeedNote, FeedStore, FetchJob
from service.usecases.ports.metrics import Metrics, NoMetrics

__all__ = ["FeedWorker", "NotificationReceiver", "Receipt"]

log = logging.getLogger(__name__)

# Sent by name (conventions: the API never imports worker code).


@dataclass(slots=True)
class Receipt:
    """What a notification led to."""

    kind: str
    ingested: int = 0
    refused: int = 0
    duplicates: int = 0
    fetches: int = 0
    catchup: bool = False
    changed_patients: list[str] = field(default_factory=list)

    @property
    def work_queued(self) -> bool:
        """Whether a worker has something to do for it."""
        return self.fetches > 0 or self.catchup


TaskChanged = Callable[[dict[str, Any]], object]
_TASK: Final = "Task"  # refracture's own Tasks come back through the feed: the alert follows (task_sync.py)


class _Ingest:
    """Validates a resource read from the EHR and ingests it like POST /fhir would (a Task goes to the Task sync)."""

    def __init__(self, ingestor: Ingestor, metrics: Metrics, task_changed: TaskChanged | None = None) -> None:
        self._ingestor = ingestor
        self._metrics = metrics
        self._counter = IntakeCounter(metrics)
        self._task_changed = task_changed

    def __call__(self, resource: dict[str, Any], receipt: Receipt) -> None:
        resource_type = resource.get("resourceType")
        if resource_type == _TASK and self._task_changed is not None and not validate_resource(resource):
            self._task_changed(resource)
            receipt.ingested += 1
            return
        try:
            admitted = admit(resource, Ids.OWN)
        except RefractureError as exc:
            self._refused(resource_type, exc, receipt)
            return
        self.write(admitted, receipt)

    def admit_from_url(self, resource: dict[str, Any], resource_id: str) -> Admitted:
        """A rest-hook's resource through the gate, its id the URL's; a refusal is counted and raised."""
        try:
            return admit(resource, Ids.URL, url_id=resource_id)
        except RefractureError as exc:
            self._counter.refused([resource.get("resourceType")], exc)
            raise

    def write(self, admitted: Admitted, receipt: Receipt) -> None:
        """Store an admitted resource and count it."""
        try:
            result = self._ingestor.write(WriteRequest(admitted.resource_type, admitted.resource_id, admitted.resource))
        except RefractureError as exc:
            if exc.problem is Problem.UNAVAILABLE:
                raise
            self._refused(admitted.resource_type, exc, receipt)
            return
        outcome = result.outcomes[0]
        assert isinstance(outcome, EntryOutcome)
        self._counter.stored(admitted.resource_type, outcome)
        receipt.ingested += 1
        receipt.changed_patients = sorted({*receipt.changed_patients, *result.changed_patients})

    def _refused(self, resource_type: object, exc: RefractureError, receipt: Receipt) -> None:
        receipt.refused += 1
        self._counter.refused([resource_type], exc)
        # The type and the first issue's path only: values could be patient data.
        log.warning(
            "event feed: a %s from the EHR was refused (%s)",
            resource_type if resource_type in INPUT_TYPES else "resource of another type",
            exc.issues[0].expression if exc.issues else exc.problem.value,
        )


class NotificationReceiver:
    """The API side: take a notification, store what came, queue what must be fetched or re-read."""

    def __init__(
        self,
        store: FeedStore,
        ingestor: Ingestor,
        clock: Clock,
        metrics: Metrics | None = None,
        task_changed: TaskChanged | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._ingest = _Ingest(ingestor, metrics or NoMetrics(), task_changed)
        self._types = INPUT_TYPES | {_TASK} if task_changed is not None else INPUT_TYPES

    def ping(self, feed_id: str) -> Receipt:
        """An R4 rest-hook notification without payload: something changed; re-read what changed since the
        last poll."""
        now = self._clock()
        with self._store.feed_session() as session:
            session.lock_feed(feed_id, now)
            session.save_feed(feed_id, None, FeedNote("ping"), now)
            session.request_catchup("ping", now)
        return Receipt("ping", catchup=True)

    def resource(self, feed_id: str, resource_type: str, resource_id: str, resource: dict[str, Any] | None) -> Receipt:
        """An R4 rest-hook update (``PUT {endpoint}/{type}/{id}``): the resource, or (no body) its id only.

        Raises:
            RefractureError: 404 for a type refracture does not take; 400 for invalid FHIR or a body that differs
                from the URL (as for ``PUT /fhir/{type}/{id}``).
        """
        if resource_type not in self._types:
            raise refuse(Problem.NOT_FOUND, "not-supported", f"refracture does not take {resource_type} resources")
        receipt = Receipt("rest-hook")
        now = self._clock()
        if resource is None:
            with self._store.feed_session() as session:
                session.lock_feed(feed_id, now)
                session.save_feed(feed_id, None, FeedNote("rest-hook"), now)
                session.queue_fetches([(resource_type, resource_id)], now)
            receipt.fetches = 1
            return receipt
        if resource.get("resourceType") != resource_type:
            raise refuse(Problem.INVALID, "invalid", "the resource's type and id must be those in the URL")
        if resource_type == _TASK:
            self._ingest(resource, receipt)
        else:
            self._ingest.write(self._ingest.admit_from_url(resource, resource_id), receipt)
        with self._store.feed_session() as session:
            session.lock_feed(feed_id, now)
            session.save_feed(feed_id, None, FeedNote("rest-hook"), now)
        return receipt

    def notification(self, feed_id: str, notification: Notification) -> Receipt:
        """A topic-based notification: handshake, heartbeat or events (full-resource, id-only or empty)."""
        kind = notification.kind
        receipt = Receipt(kind)
        eventful = kind in ("event-notification", "query-event")
        # Resources first, each its own transaction: if recording the events then fails, the EHR's retry finds them
        # still new and ingests again, which changes nothing.
        position, seen = self._store.feed_position(feed_id)
        new = set(advance(position, seen, notification.numbers, notification.events_since_start).new_events)
        fresh = [e for e in notification.events if e.number is None or e.number in new] if eventful else []
        for event in fresh:
            included = notification.resources.get(event.focus) if event.focus else None
            if included is not None:
                self._ingest(included, receipt)
        now = self._clock()
        with self._store.feed_session() as session:
            position, seen = session.lock_feed(feed_id, now)
            step = advance(position, seen, notification.numbers, notification.events_since_start, kind == "handshake")
            session.save_feed(
                feed_id,
                step,
                FeedNote(kind, notification.subscription, notification.topic, notification.status),
                now,
            )
            recorded = set(step.new_events)
            fresh = [e for e in notification.events if e.number is None or e.number in recorded] if eventful else []
            receipt.duplicates = len(notification.events) - len(fresh) if eventful else 0
            wanted = sorted(
                {
                    e.focus
                    for e in fresh
                    if e.focus is not None and e.focus[0] in self._types and e.focus not in notification.resources
                }
            )
            if wanted:
                session.queue_fetches(wanted, now)
                receipt.fetches = len(wanted)
            # Empty content names nothing: only a re-read finds what changed.
            empty = any(e.focus is None for e in fresh)
            if step.gap or empty:
                session.request_catchup("gap" if step.gap else "empty", now)
                receipt.catchup = True
        if step.gap:
            log.warning(
                "event feed %s: events missing up to %d; catching up by polling", feed_id, step.position.highest
            )
        return receipt


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """How the worker side runs."""

    resource_types: tuple[str, ...]
    poll_interval_s: float  # 0: no periodic poll (catch-up polls still run when asked for)
    lookback_s: float  # how far back a type's first poll reads
    silence_s: float | None  # heartbeat period + grace; None: no heartbeat watch
    page_size: int = 100
    lease_s: float = 300.0
    fetch_batch: int = 100
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(2.0, 300.0, 86400.0))


@dataclass(slots=True)
class WorkDone:
    """What one run of the worker did."""

    fetched: int = 0
    polled: bool = False
    read: int = 0
    receipt: Receipt = field(default_factory=lambda: Receipt("work"))


class FeedWorker:
    """The worker side: fetch announced resources, poll by ``_lastUpdated``, ring the doorbell for changes."""

    def __init__(
        self,
        store: FeedStore,
        ehr: EhrGateway | None,
        ingestor: Ingestor,
        ring: Callable[[Sequence[str]], object],
        clock: Clock,
        settings: FeedSettings,
        metrics: Metrics | None = None,
        jitter: Callable[[], float] = random.random,
        audit: Callable[[Sequence[AuditRecord]], None] | None = None,
    ) -> None:
        self._store = store
        self._ehr = ehr
        self._audit = audit
        self._ingest = _Ingest(ingestor, metrics or NoMetrics())
        self._ring = ring
        self._clock = clock
        self._settings = settings
        self._jitter = jitter

    def follow_tasks(self, task_changed: TaskChanged) -> None:
        """Hand refracture's own Tasks read from the EHR (fetched or polled) to the Task sync (issue 18)."""
        self._ingest = _Ingest(self._ingest._ingestor, self._ingest._metrics, task_changed)

    def work(self) -> WorkDone:
        """Fetch what is due, then poll if asked for or due; without an EHR there is nothing to read."""
        done = WorkDone()
        if self._ehr is None:
            return done
        self.fetch_due(done)
        self.poll(done)
        if done.receipt.changed_patients:
            self._ring(done.receipt.changed_patients)
        return done

    def fetch_due(self, done: WorkDone) -> None:
        """Read every due fetch job's resource from the EHR and ingest it."""
        assert self._ehr is not None
        while True:
            now = self._clock()
            jobs = self._store.claim_fetches(
                now, now + timedelta(seconds=self._settings.lease_s), self._settings.fetch_batch
            )
            for job in jobs:
                self._fetch(job, done)
            if len(jobs) < self._settings.fetch_batch:
                return

    def _fetch(self, job: FetchJob, done: WorkDone) -> None:
        assert self._ehr is not None
        path = f"/{job.resource_type}/{quote(job.resource_id, safe='')}"
        try:
            answer = self._ehr.request("GET", path)
        except EhrTemporaryError as exc:
            delay = self._settings.retry.delay(job.attempts + 1, exc.retry_after, self._jitter)
            self._store.retry_fetch(job, self._clock() + timedelta(seconds=delay), str(exc))
            return
        except EhrRejected as exc:
            if exc.status in (404, 410):
                # Deleted (or never visible to us) at the EHR since it was announced: nothing to read.
                self._store.finish_fetch(job)
                return
            self._store.fail_fetch(job, str(exc))
            return
        except EhrError as exc:
            self._store.fail_fetch(job, str(exc))
            return
        resource = _exact(answer)
        if not isinstance(resource, dict):
            self._store.fail_fetch(job, "the EHR's answer is not a resource")
            return
        self._ingest(resource, done.receipt)
        self._audited("feed-fetch", "event feed: fetch from the EHR", [resource])
        self._store.finish_fetch(job)
        done.fetched += 1

    def _audited(self, action: str, what: str, resources: Sequence[dict[str, Any]]) -> None:
        """What the worker read from the EHR joins the audit trail under refracture's own name, per resource."""
        if self._audit is None or not resources:
            return
        now = self._clock()
        self._audit(
            [
                system_record(
                    now,
                    action,
                    what,
                    resource_type=str(r.get("resourceType"))[:64],
                    resource_id=str(r.get("id"))[:64],
                    patient_id=(patient_of(r) or "")[:64] or None,
                )
                for r in resources
            ]
        )

    def poll(self, done: WorkDone, force: bool = False) -> None:
        """Read, per type, what changed at the EHR since the high-water mark (if asked for, due, or forced)."""
        assert self._ehr is not None
        settings = self._settings
        now = self._clock()
        if settings.silence_s is not None:
            for feed in self._store.note_silent_feeds(now - timedelta(seconds=settings.silence_s), now):
                log.warning("event feed %s: no notification within its heartbeat period; catching up", feed)
                with self._store.feed_session() as session:
                    session.request_catchup("silence", now)
        periodic = now - timedelta(seconds=settings.poll_interval_s) if settings.poll_interval_s > 0 else None
        claim = self._store.claim_poll(now, now if force else periodic, now + timedelta(seconds=settings.lease_s))
        if claim is None:
            return
        error: str | None = None
        try:
            marks = self._store.high_water()
            for resource_type in settings.resource_types:
                since = marks.get(resource_type) or now - timedelta(seconds=settings.lookback_s)
                done.read += self._poll_type(resource_type, since, done.receipt)
        except EhrError as exc:
            error = str(exc)
            log.warning("event feed: the catch-up poll failed (%s); it runs again", exc)
        finally:
            self._store.finish_poll(claim, self._clock(), error)
        done.polled = error is None

    def _poll_type(self, resource_type: str, since: datetime, receipt: Receipt) -> int:
        assert self._ehr is not None
        # ge, not gt: several changes can share the mark's instant; reading one again changes nothing.
        stamp = quote(since.isoformat(), safe="")
        path: str | None = (
            f"/{resource_type}?_lastUpdated=ge{stamp}&_sort=_lastUpdated&_count={self._settings.page_size}"
        )
        read = 0
        newest = since
        while path is not None:
            bundle = _exact(self._ehr.request("GET", path))
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise EhrRejected(f"the EHR's {resource_type} search answer is not a Bundle")
            page = list(_matches(bundle, resource_type))
            for resource in page:
                self._ingest(resource, receipt)
                read += 1
                newest = max(newest, _last_updated(resource) or newest)
            self._audited("feed-poll", "event feed: poll of the EHR", page)
            if newest > since:
                self._store.save_high_water(resource_type, newest)  # progress survives a failure on a later page
            path = self._next_page(bundle)
        return read

    def _next_page(self, bundle: dict[str, Any]) -> str | None:
        assert self._ehr is not None
        for link in bundle.get("link") or []:
            if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
                url: str = link["url"]
                base = self._ehr.base_url.rstrip("/")
                # Only pages of the EHR itself: the client's token must never go to another origin (SSRF).
                if not url.startswith(base + "/") and not url.startswith(base + "?"):
                    raise EhrRejected("the EHR's next page link points at another server; not followed")
                return url[len(base) :]
        return None


def _exact(answer: EhrAnswer) -> Any:
    """The answer's JSON with decimals as written (Decimal), as the API reads them: the same content read by
    notification and by poll must hash the same, or it would make a new version."""
    if answer.raw:
        try:
            return parse(answer.raw)
        except RefractureError:
            return answer.body
    return answer.body


def _matches(bundle: dict[str, Any], resource_type: str) -> Iterable[dict[str, Any]]:
    for entry in bundle.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        mode = (entry.get("search") or {}).get("mode") if isinstance(entry.get("search"), dict) else None
        resource = entry.get("resource")
        if mode in (None, "match") and isinstance(resource, dict) and resource.get("resourceType") == resource_type:
            yield resource


def _last_updated(resource: dict[str, Any]) -> datetime | None:
    meta = resource.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, dict) else None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
