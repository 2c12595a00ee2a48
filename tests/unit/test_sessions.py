"""Session lifetime without a database: capped at the token's exp, ended when idle, roles re-derived from the stored
claims (issue 16, finding 9)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from service.security.principal import Role
from service.security.sessions import PendingSignIn, Sessions
from tests.support.clock import ManualClock

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[bytes, list[Any]] = {}

    def save_session(
        self, id_hash: bytes, claims: Mapping[str, Any], csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        self.rows[id_hash] = [dict(claims), csrf_token, expires_at, now]

    def find_session(self, id_hash: bytes, now: datetime) -> tuple[dict[str, Any], str, datetime, datetime] | None:
        row = self.rows.get(id_hash)
        if row is None or row[2] <= now:
            return None
        return row[0], row[1], row[2], row[3]

    def touch_session(self, id_hash: bytes, now: datetime) -> None:
        self.rows[id_hash][3] = now

    def delete_session(self, id_hash: bytes) -> None:
        self.rows.pop(id_hash, None)

    def save_pending(self, pending: PendingSignIn) -> None:
        raise NotImplementedError

    def take_pending(self, state: str, now: datetime) -> PendingSignIn | None:
        raise NotImplementedError


def test_a_session_never_outlives_the_token_and_ends_when_idle() -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    sessions = Sessions(store, clock, ttl_s=8 * 3600, roles_claim="roles", idle_s=900)
    exp = int((T0 + timedelta(hours=1)).timestamp())
    cookie, session = sessions.start({"sub": "ada", "roles": ["care-coordinator"], "exp": exp})
    assert session.expires_at == T0 + timedelta(hours=1)  # not 8 h: the token's exp
    for _ in range(5):  # busy: every 10 minutes
        clock.now += timedelta(minutes=10)
        assert sessions.find(cookie) is not None
    clock.now += timedelta(minutes=11)  # 61 minutes in: the token has expired
    assert sessions.find(cookie) is None

    cookie, _ = sessions.start({"sub": "ada", "roles": ["care-coordinator"]})
    clock.now += timedelta(minutes=14)
    assert sessions.find(cookie) is not None
    clock.now += timedelta(minutes=15)  # idle for 15 minutes
    assert sessions.find(cookie) is None


def test_roles_are_re_derived_from_the_stored_claims_only() -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    sessions = Sessions(store, clock, ttl_s=3600, roles_claim="realm_access.roles")
    cookie, _ = sessions.start({"sub": "ada", "realm_access": {"roles": ["care-coordinator", "made-up"]}})
    found = sessions.find(cookie)
    assert found is not None
    assert found.principal.roles == frozenset({Role.CARE_COORDINATOR})
    # What is kept is what authorisation needs, not the whole token.
    [(claims, *_)] = store.rows.values()
    assert set(claims) <= {"sub", "roles", "scope", "client_id", "azp", "name", "patient", "exp", "sites"}
