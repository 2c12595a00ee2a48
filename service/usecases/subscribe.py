"""Register refracture's Subscriptions at the EHR (`refracture subscribe`): found by their tag and updated, never
duplicated."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from service.fhir.subscription_builders import (
    TAG_SYSTEM,
    backport_advertised,
    rest_hook_subscription,
    topic_subscription,
)
from service.usecases.ports.clock import Clock
from service.usecases.ports.ehr import EhrGateway
from service.usecases.ports.feeds import FeedStore, SecretStore

__all__ = ["Registered", "Subscriber", "SubscriptionPlan", "rotate_secret", "secret_hash"]

log = logging.getLogger(__name__)

# Our clock and the EHR's differ a little: the first poll after registering starts this much earlier.
_CLOCK_MARGIN = timedelta(minutes=5)


def secret_hash(secret: str) -> bytes:
    """What is stored of a secret: its SHA-256 (a copy of the table cannot be replayed as notifications)."""
    return hashlib.sha256(secret.encode()).digest()


def rotate_secret(store: SecretStore, feed_id: str, clock: Clock, grace: timedelta) -> str:
    """A fresh secret for the feed's Subscriptions (every `refracture subscribe` rotates it); the one it replaces
    is accepted for ``grace`` longer, for notifications already on their way and Subscriptions not yet updated."""
    secret = secrets.token_urlsafe(32)
    now = clock()
    store.rotate(feed_id, secret_hash(secret), now, now + grace)
    return secret


@dataclass(frozen=True, slots=True)
class SubscriptionPlan:
    """What to ask the EHR for."""

    feed_id: str
    endpoint: str  # refracture's receiving URL for this feed, as the EHR reaches it
    header: str | None  # "Name: value" the EHR sends back with every notification
    resource_types: tuple[str, ...]
    topic: str | None = None  # a SubscriptionTopic canonical: topic-based when the EHR advertises the backport
    heartbeat_s: int = 300
    content: str = "id-only"


@dataclass(frozen=True, slots=True)
class Registered:
    """One Subscription at the EHR."""

    criteria: str
    ehr_id: str
    action: str  # created | updated | unchanged


class Subscriber:
    """Creates or updates refracture's Subscriptions at the EHR."""

    def __init__(self, ehr: EhrGateway, store: FeedStore, clock: Clock) -> None:
        self._ehr = ehr
        self._store = store
        self._clock = clock

    def register(self, plan: SubscriptionPlan) -> list[Registered]:
        """Register (or update) every Subscription of the plan; set the poll's starting marks where none are.

        Raises:
            EhrError: the EHR refused or could not be reached (nothing is half-registered: run it again).
        """
        wanted: list[dict[str, Any]]
        if plan.topic and backport_advertised(self._ehr.metadata()):
            wanted = [
                topic_subscription(
                    f"{plan.feed_id}.topic", plan.topic, plan.endpoint, plan.header, plan.heartbeat_s, plan.content
                )
            ]
        else:
            wanted = [
                rest_hook_subscription(f"{plan.feed_id}.{kind}", f"{kind}?", plan.endpoint, plan.header)
                for kind in plan.resource_types
            ]
        done = [self._put(subscription) for subscription in wanted]
        # Changes from now on come by notification or poll; what came before is the Bulk Data import's.
        self._store.ensure_high_water(plan.resource_types, self._clock() - _CLOCK_MARGIN)
        return done

    def _put(self, subscription: dict[str, Any]) -> Registered:
        code = subscription["meta"]["tag"][0]["code"]
        found = self._find(code)
        if found is None:
            answer = self._ehr.request("POST", "/Subscription", subscription)
            created = answer.body if isinstance(answer.body, dict) else {}
            return Registered(subscription["criteria"], str(created.get("id") or _id_of(answer.headers)), "created")
        ehr_id = str(found["id"])
        if _same(found, subscription):
            return Registered(subscription["criteria"], ehr_id, "unchanged")
        self._ehr.request("PUT", f"/Subscription/{quote(ehr_id, safe='')}", {**subscription, "id": ehr_id})
        return Registered(subscription["criteria"], ehr_id, "updated")

    def _find(self, code: str) -> dict[str, Any] | None:
        token = quote(f"{TAG_SYSTEM}|{code}", safe="")
        bundle = self._ehr.request("GET", f"/Subscription?_tag={token}").body
        matches = [
            e["resource"]
            for e in (bundle.get("entry") or [] if isinstance(bundle, dict) else [])
            if isinstance(e, dict) and isinstance(e.get("resource"), dict) and _has_tag(e["resource"], code)
        ]
        if len(matches) > 1:
            # Left by an earlier installation or by hand: refracture updates one and says so; the operator decides.
            log.warning("the EHR holds %d Subscriptions tagged %s; updating the first", len(matches), code)
        return matches[0] if matches else None


def _has_tag(resource: dict[str, Any], code: str) -> bool:
    tags: Sequence[Any] = (resource.get("meta") or {}).get("tag") or []
    return any(isinstance(t, dict) and t.get("system") == TAG_SYSTEM and t.get("code") == code for t in tags)


def _same(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    # An active Subscription with the same criteria and channel needs nothing; one in error or off is re-requested.
    return (
        found.get("status") == "active"
        and found.get("criteria") == wanted["criteria"]
        and found.get("channel") == wanted["channel"]
    )


def _id_of(headers: dict[str, str]) -> str:
    location = headers.get("location") or headers.get("Location") or ""
    parts = location.split("/_history")[0].rstrip("/").split("/")
    return parts[-1] if parts else ""
