"""The Subscriptions refracture asks the EHR for: R4 rest-hooks per resource type, or one topic-based Subscription
(R4 backport) when the EHR's CapabilityStatement advertises the backport. Deterministic: a tag names each one, so
registering again finds and updates it instead of adding another."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["BACKPORT", "TAG_SYSTEM", "backport_advertised", "rest_hook_subscription", "topic_subscription"]

# R4 Subscription has no identifier element: a meta.tag (searchable as _tag) names refracture's own.
TAG_SYSTEM: Final = "https://refracture.dev/fhir/CodeSystem/subscription"
BACKPORT: Final = "http://hl7.org/fhir/uv/subscriptions-backport"
_BACKPORT_PROFILE: Final = f"{BACKPORT}/StructureDefinition/backport-subscription"
_BACKPORT_SERVER: Final = f"{BACKPORT}/CapabilityStatement/backport-subscription-server"
_REASON: Final = "refracture: re-fracture risk and alerts need the patient's records as they change"


def backport_advertised(capability: Any) -> bool:
    """Whether a CapabilityStatement says the server takes topic-based Subscriptions (R4 backport): it instantiates
    the backport's server CapabilityStatement, or its Subscription resource supports the backport profile."""
    if not isinstance(capability, Mapping):
        return False
    instantiates = capability.get("instantiates") or []
    if any(isinstance(url, str) and url.startswith(_BACKPORT_SERVER) for url in instantiates):
        return True
    for rest in capability.get("rest") or []:
        for resource in rest.get("resource") or [] if isinstance(rest, Mapping) else []:
            if isinstance(resource, Mapping) and resource.get("type") == "Subscription":
                profiles = [*(resource.get("supportedProfile") or []), resource.get("profile")]
                if any(isinstance(p, str) and p.startswith(_BACKPORT_PROFILE) for p in profiles):
                    return True
    return False


def _tag(code: str) -> dict[str, Any]:
    return {"tag": [{"system": TAG_SYSTEM, "code": code}]}


def rest_hook_subscription(code: str, criteria: str, endpoint: str, header: str | None) -> dict[str, Any]:
    """An R4 rest-hook Subscription: with a payload, the EHR sends ``PUT {endpoint}/{type}/{id}`` with the
    resource (R4 subscription.html, rest-hook)."""
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}
    if header:
        channel["header"] = [header]
    return {
        "resourceType": "Subscription",
        "meta": _tag(code),
        "status": "requested",
        "reason": _REASON,
        "criteria": criteria,
        "channel": channel,
    }


def topic_subscription(
    code: str, topic: str, endpoint: str, header: str | None, heartbeat_s: int, content: str
) -> dict[str, Any]:
    """A topic-based Subscription in the R4 backport's form (profile backport-subscription): criteria is the
    topic's canonical URL; heartbeat period, timeout and payload content are extensions."""
    extension = f"{BACKPORT}/StructureDefinition"
    channel: dict[str, Any] = {
        "extension": [
            {"url": f"{extension}/backport-heartbeat-period", "valueUnsignedInt": heartbeat_s},
            {"url": f"{extension}/backport-timeout", "valueUnsignedInt": 30},
        ],
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": f"{extension}/backport-payload-content", "valueCode": content}]},
    }
    if header:
        channel["header"] = [header]
    return {
        "resourceType": "Subscription",
        "meta": {**_tag(code), "profile": [_BACKPORT_PROFILE]},
        "status": "requested",
        "reason": _REASON,
        "criteria": topic,
        "channel": channel,
    }
