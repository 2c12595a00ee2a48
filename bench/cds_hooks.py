"""bench/cds_hooks: CDS Hooks patient-view and order-sign over a loaded database, through the real HTTP server.

    .venv/bin/python -m bench.cds_hooks [--alerts 100000] [--requests 300]   (from the repository root)

Seeds a private database as bench/worklist does (patient summaries and 100,000 open alerts by COPY), adds a stored
assessment and a few medication facts per patient, starts `refracture api` in its own process and times, one at a
time with httpx: patient-view for random patients, order-sign with denosumab and no follow-on (a warning), order-sign
with a follow-on in the drafts, and a patient refracture does not know. Beside it, the use case alone (CdsHooks.cards
in this process) and the check of an EHR's signed JWT (signature, claims, jti stored in PostgreSQL). Target (CDS
Hooks 2.0: "respond quickly, on the order of 500 ms"): p99 under 500 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from bench.database import BENCH_AUTH, api_env, private_database
from bench.ingest import machine
from bench.worklist import TODAY, percentiles, seed, time_calls
from service.domain import risk_parameters as RP
from service.fhir.cds_hooks import ORDER_SIGN, PATIENT_VIEW
from service.platform.config import Settings
from service.security.cds_trust import make_cds_verifier
from service.usecases.cds_hooks import HookCall
from tests.support.parts import build_parts
from tests.support.processes import ApiProcess

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ISS = "https://ehr.bench.example"


def seed_assessments(database_url: str, rng: random.Random) -> int:
    """One stored assessment per patient with a summary, and a denosumab history for half of them."""
    now = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    codes = [f.code for f in RP.FACTORS]
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        patients = [r[0] for r in conn.execute("SELECT patient_id FROM patient_summary ORDER BY patient_id")]
        with cur.copy(
            "COPY assessment (id, patient_id, sequence_no, model_version, inputs_hash, assessed_at, index_date, "
            "probability, probability_low, probability_high, band, result, resource) FROM STDIN"
        ) as copy:
            for pid in patients:
                p = min(0.9, max(0.01, rng.lognormvariate(-2.0, 0.6)))
                known = rng.sample(codes, k=min(len(codes), 8))
                result = {
                    "contributions": {c: round(rng.uniform(-0.5, 0.8), 4) for c in known},
                    "missing": [c for c in codes if c not in known][:4],
                }
                band = "low" if p < 0.10 else "high" if p >= 0.20 else "moderate"
                copy.write_row(
                    (uuid.uuid4(), pid, 0, "refracture-ovcf-2y/bench", "h", now, TODAY - timedelta(days=200), p,
                     p * 0.7, min(0.99, p * 1.5), band, json.dumps(result), "{}")
                )  # fmt: skip
        with cur.copy(
            "COPY fact (patient_id, kind, effective_date, status, attrs, source_type, source_id, source_version, "
            "recorded_at) FROM STDIN"
        ) as copy:
            for n, pid in enumerate(patients):
                if n % 2:
                    continue
                for k in range(3):
                    day = TODAY - timedelta(days=200 + 183 * k)
                    attrs = json.dumps({"drug": "denosumab-60mg", "event": "administration", "dose_mg": 60.0})
                    copy.write_row((pid, "medication", day, "completed", attrs, "MedicationAdministration",
                                    f"{pid}-d{k}", 1, now))  # fmt: skip
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return len(patients)


def _request(service: str, patient: str, medications: list[dict[str, Any]]) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/bench", "patientId": patient}
    if service == ORDER_SIGN:
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {
                    "resource": {
                        "resourceType": "MedicationRequest",
                        "id": f"draft-{n}",
                        "status": "draft",
                        "intent": "order",
                        "subject": {"reference": f"Patient/{patient}"},
                        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
                    }
                }
                for n, code in enumerate(m["code"] for m in medications)
            ],
        }
    hook = service.removeprefix("refracture-")
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}


def _jwt_timing(database_url: str, redis_url: str, requests: int) -> tuple[float, float]:
    """The EHR's JWT checked as on every call: RS384 signature, claims, the jti claimed in PostgreSQL."""
    key = RSAKey.generate_key(2048, parameters={"kid": "k"}, private=True)
    jwks = KeySet([key]).as_dict(private=False)
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        cds_issuers={ISS: {"jwks_url": f"{ISS}/jwks"}},
        cds_base_url="https://refracture.bench",
    )
    parts = build_parts(settings)
    verifier = make_cds_verifier(
        settings,
        parts.cds_hooks.claim_jti,
        httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=jwks))),
    )
    aud = [f"https://refracture.bench/cds-services/{PATIENT_VIEW}"]

    def check() -> None:
        now = int(time.time())
        claims = {"iss": ISS, "aud": aud[0], "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
        token = jwt.encode({"alg": "RS384", "kid": "k"}, claims, key, algorithms=["RS384"])
        verifier.verify(token, aud)

    try:
        return percentiles(time_calls(check, requests))
    finally:
        verifier.close()
        parts.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(9)
    with private_database() as (services, database_url):
        server: ApiProcess | None = None
        try:
            started = time.perf_counter()
            seed(database_url, args.alerts, rng)
            patients = seed_assessments(database_url, rng)
            seeded_s = time.perf_counter() - started
            server = ApiProcess(api_env(database_url, services.redis_url))
            base = server.base_url
            server.wait_ready()

            parts = build_parts(Settings(database_url=database_url, redis_url=services.redis_url))
            dmab = [{"code": "993452"}]
            with_follow_on = [{"code": "993452"}, {"code": "705824"}]

            def some_patient() -> str:
                return f"bench-{rng.randrange(patients):07d}"

            scenarios: list[tuple[str, str, Callable[[], str], list[dict[str, Any]], int | None]] = [
                ("patient-view, random patient", PATIENT_VIEW, some_patient, [], None),
                ("order-sign, denosumab, no follow-on", ORDER_SIGN, lambda: "bench-0000000", dmab, 1),
                ("order-sign, denosumab + zoledronic acid", ORDER_SIGN, some_patient, with_follow_on, 0),
                ("order-sign, denosumab, random patient", ORDER_SIGN, some_patient, dmab, None),
                ("patient-view, unknown patient", PATIENT_VIEW, lambda: "nobody", [], 0),
            ]
            print(f"bench/cds_hooks on {machine()}")
            print(
                f"{patients:,} patients with a stored assessment, {args.alerts:,} open alerts, denosumab doses for "
                f"half, seeded by COPY in {seeded_s:.1f} s; {args.requests} requests per line, one at a time\n"
            )
            print(f"{'':42} {'HTTP p50':>9} {'HTTP p99':>9} {'use case p50':>13} {'p99':>7}")
            worst = 0.0
            with httpx.Client(base_url=base, timeout=30, headers=BENCH_AUTH) as client:
                for label, service, patient, medications, cards in scenarios:

                    def call(
                        service: str = service,
                        patient: Callable[[], str] = patient,
                        medications: list[dict[str, Any]] = medications,
                        cards: int | None = cards,
                    ) -> None:
                        answer = client.post(f"/cds-services/{service}", json=_request(service, patient(), medications))
                        if answer.status_code != 200 or (cards is not None and len(answer.json()["cards"]) != cards):
                            raise RuntimeError(f"unexpected answer: {answer.status_code} {answer.text[:300]}")

                    def direct(
                        service: str = service,
                        patient: Callable[[], str] = patient,
                        medications: list[dict[str, Any]] = medications,
                    ) -> None:
                        ctx = _request(service, patient(), medications)["context"]
                        hook = HookCall(service, ctx["patientId"], ctx.get("draftOrders"))
                        parts.cds_hooks.cards(hook, "https://refracture.bench/worklist/patients/x")

                    p50, p99 = percentiles(time_calls(call, args.requests))
                    d50, d99 = percentiles(time_calls(direct, args.requests))
                    worst = max(worst, p99)
                    print(f"{label:42} {p50:9.1f} {p99:9.1f} {d50:13.1f} {d99:7.1f}   ms")
            parts.close()
            j50, j99 = _jwt_timing(database_url, services.redis_url, args.requests)
            print(f"{'EHR JWT check (RS384, claims, jti stored)':42} {'':9} {'':9} {j50:13.1f} {j99:7.1f}   ms")
            print(f"\nworst HTTP p99 {worst:.1f} ms, plus the JWT check {j99:.1f} ms (target < 500 ms)")
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
