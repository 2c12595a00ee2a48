"""`refracture subscribe`: register refracture's Subscriptions at the EHR (or update them); idempotent."""

from __future__ import annotations

import argparse
from datetime import timedelta

from service.composition.cli import command_parts
from service.fhir.resource_types import INPUT_TYPES
from service.usecases.subscribe import Subscriber, SubscriptionPlan, rotate_secret

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(_: argparse.Namespace) -> int:
    """Register refracture's Subscriptions at the EHR (or update them); 2 without an EHR or a public URL."""
    with command_parts() as parts:
        settings = parts.core.settings
        if parts.ehr is None or not settings.subscription_public_url:
            print("refracture subscribe needs REFRACTURE_EHR_BASE_URL and REFRACTURE_SUBSCRIPTION_PUBLIC_URL")
            return 2
        # A fresh shared secret on every run (rotation); the EHR gets it in the Subscriptions' channel header.
        secret = rotate_secret(
            parts.subscription_secrets,
            settings.subscription_feed,
            parts.core.clock,
            timedelta(seconds=settings.subscription_secret_grace_s),
        )
        bearer = settings.subscription_header.lower() == "authorization"
        header = f"{settings.subscription_header}: {'Bearer ' if bearer else ''}{secret}"
        plan = SubscriptionPlan(
            feed_id=settings.subscription_feed,
            endpoint=f"{settings.subscription_public_url.rstrip('/')}/fhir/$subscription-hook/{settings.subscription_feed}",
            header=header,
            resource_types=tuple(sorted(INPUT_TYPES)),
            topic=settings.subscription_topic,
            heartbeat_s=settings.subscription_heartbeat_period_s,
            content=settings.subscription_content,
        )
        registered = Subscriber(parts.ehr, parts.feeds, parts.core.clock).register(plan)
    for one in registered:
        print(f"{one.action}: Subscription/{one.ehr_id} ({one.criteria})")
    return 0
