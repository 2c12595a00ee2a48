"""The start-up self-check: `refracture worker`, `beat` and `api` stop at once, with one clear line, when what they
need is missing or unreachable; they name the setting, show the address and never the password."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.adapters.startup_check import run_checks
from service.devtools.local_services import LocalServices, free_port
from tests.ehr_standin import RunningStandIn
from tests.support.databases import create_database, drop_database
from tests.support.paths import ROOT
from tests.support.settings import make_settings, worker_env

pytestmark = pytest.mark.integration

SECRET = "Zyxquorthian"  # a made-up password that must never reach a line
# Blocks one import as if the package were not installed (what a user without celery[redis] had: kombu's Redis
# transport imports `packaging`, which only that extra declares).
BLOCK_PACKAGING = """
import sys


class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "packaging" or name.startswith("packaging."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Block())
"""


def start(command: str, env: dict[str, str]) -> tuple[int, list[str], float]:
    """Run `refracture <command>` until it exits (it must, quickly): its status, its lines, its seconds."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "service", command],
        env={**env, "REFRACTURE_LOG_FORMAT": "text"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).splitlines(), time.monotonic() - started


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_no_broker_stops_the_worker_and_beat_with_one_line_naming_the_setting(
    services: LocalServices, database_url: str, command: str
) -> None:
    port = free_port()
    env = worker_env(make_settings(services, database_url))
    env["REFRACTURE_REDIS_URL"] = f"redis://:{SECRET}@127.0.0.1:{port}/0"
    status, lines, seconds = start(command, env)
    assert status != 0
    assert seconds < 20
    assert not [line for line in lines if SECRET in line]
    (failed,) = [line for line in lines if "start-up check failed: " in line]
    assert f"REFRACTURE_REDIS_URL=redis://:***@127.0.0.1:{port}/0 does not answer" in failed
    assert "Connection refused" in failed
    assert lines[-1].endswith(f"refracture {command} not started: the start-up check failed for broker")


def test_no_database_stops_the_worker_with_one_line_naming_the_setting(services: LocalServices) -> None:
    port = free_port()
    url = f"postgresql://refracture:{SECRET}@127.0.0.1:{port}/refracture"
    env = worker_env(make_settings(services, url))
    status, lines, seconds = start("worker", env)
    assert status != 0
    assert seconds < 20
    assert not [line for line in lines if SECRET in line]
    (failed,) = [line for line in lines if "start-up check failed: " in line]
    assert f"REFRACTURE_DATABASE_URL=postgresql://refracture:***@127.0.0.1:{port}/refracture does not answer" in failed
    assert f"port {port} failed: Connection refused" in failed


def test_a_missing_broker_transport_module_is_named_with_the_fix(
    services: LocalServices, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCK_PACKAGING, encoding="utf-8")
    env = {**worker_env(make_settings(services, database_url)), "PYTHONPATH": str(tmp_path)}
    status, lines, _ = start("beat", env)
    assert status != 0
    (failed,) = [line for line in lines if "start-up check failed: " in line]
    assert "the broker transport" in failed
    assert (
        "ModuleNotFoundError: No module named 'packaging' (install refracture with its dependencies: pip install .)"
        in (failed)
    )


def test_the_api_starts_without_a_broker_but_not_without_a_database(services: LocalServices, database_url: str) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    (broker, database, ehr) = run_checks(make_settings(services, database_url, redis_url=closed), "api", 1.0)
    assert (broker.ok, broker.fatal) == (False, False)  # the API keeps accepting data; /readyz says degraded
    assert "does not answer" in broker.line
    assert database.ok
    assert ehr.ok
    worker_broker = run_checks(make_settings(services, database_url, redis_url=closed), "worker", 1.0)[0]
    assert worker_broker.fatal
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    assert run_checks(make_settings(services, nowhere), "api", 1.0)[1].fatal


def test_an_unmigrated_database_is_a_warning_that_says_what_to_run(services: LocalServices) -> None:
    name = f"refracture_empty_{free_port()}"
    url = create_database(services, name)
    try:
        database = run_checks(make_settings(services, url), "worker", 1.0)[1]
    finally:
        drop_database(services, name)
    assert (database.ok, database.fatal) == (False, False)
    assert database.line.endswith("not applied: run refracture migrate")


def test_an_ehr_that_does_not_answer_is_a_warning_and_a_bad_ehr_setting_stops_the_start(
    services: LocalServices, database_url: str, ehr: RunningStandIn
) -> None:
    answering = run_checks(make_settings(services, database_url, ehr_base_url=ehr.base_url), "worker", 1.0)[2]
    assert answering.ok
    assert f"REFRACTURE_EHR_BASE_URL={ehr.base_url} answers (HTTP 200)" in answering.line
    down = f"http://127.0.0.1:{free_port()}/fhir"
    silent = run_checks(make_settings(services, database_url, ehr_base_url=down), "worker", 1.0)[2]
    assert (silent.ok, silent.fatal) == (False, False)  # write-backs wait in their outbox
    assert "Connection refused" in silent.line
    incomplete = make_settings(services, database_url, ehr_base_url=ehr.base_url, ehr_auth="bearer")
    broken = run_checks(incomplete, "worker", 1.0)[2]
    assert broken.fatal
    assert "REFRACTURE_EHR_AUTH=bearer needs REFRACTURE_EHR_TOKEN" in broken.line
