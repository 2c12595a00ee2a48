"""The deployment files (deploy/): linted, validated against their schemas, and checked against the code they run.

No container engine runs here, so nothing is built or started. What can be proved without one is: hadolint passes the
Dockerfile; the compose file fits the compose specification; kustomize renders the production overlay and every
object fits the Kubernetes API (kubernetes-validate's offline schemas, strict); and the files agree with the code:
every REFRACTURE_* variable is a setting, every `refracture` command parses, every probe asks a route that exists,
images are pinned and containers run as non-root with a read-only root filesystem.

kubectl comes from Debian's packages (`kubectl kustomize`), installed with apt-get when missing, as the browser tests
install Chromium. There is no Helm on this machine, which is why the manifests are kustomize.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from service.entrypoints import cli
from service.entrypoints.cli.commands import COMMANDS
from service.platform.config import Settings
from tests.support.debian import installed
from tests.support.paths import ROOT
from tests.support.servers import HandlerServer

DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
OVERLAY = K8S / "overlays" / "production"
README = DEPLOY / "README.md"
GENERATE = DEPLOY / "dev-secrets" / "generate.sh"
BIN = Path(sys.executable).parent

# The oldest minor the manifests aim at (clusters lag behind upstream releases), and the newest the schemas know.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
# Settings read from files in REFRACTURE_SECRETS_DIR in production, never from a ConfigMap or a plain variable:
# a variable would win over the mounted Secret, and its value would show in `kubectl describe`.
SECRET_FIELDS = {
    name
    for name, field in Settings.model_fields.items()
    if field.annotation is SecretStr or SecretStr in typing.get_args(field.annotation)
} | {"database_url", "migrate_database_url", "redis_url", "auth_dev_tokens"}
_VARIABLE = re.compile(r"\bREFRACTURE_[A-Z0-9_]+\b")


def _tool(name: str) -> str:
    """A console script of the test extra: next to this Python first (the venv), else on the PATH."""
    candidate = BIN / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: pip install -e '.[test]'")
    return found


def _kubectl() -> str:
    """kubectl, installed from Debian's packages first if the machine has none."""
    return installed("kubectl", "kubectl", pytest.skip, " (Debian's package `kubectl`)")


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


# --- what the files say -------------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not the exec (JSON) form: {arguments}"
    return [str(part) for part in value]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _refracture_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run the refracture image."""
    return {name: s for name, s in compose["services"].items() if str(s.get("image", "")).startswith("refracture:")}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {str(key): str(value) for key, value in raw.items()}


def _render(kubectl: str, folder: Path) -> list[dict[str, Any]]:
    done = _run([kubectl, "kustomize", str(folder)])
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def kubectl() -> str:
    return _kubectl()


@pytest.fixture(scope="module")
def rendered(kubectl: str) -> list[dict[str, Any]]:
    """The production overlay as kustomize renders it."""
    return _render(kubectl, OVERLAY)


def _workloads(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployments and Jobs by name."""
    return {o["metadata"]["name"]: o for o in objects if o["kind"] in ("Deployment", "Job")}


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    pod = workload["spec"]["template"]["spec"]
    assert isinstance(pod, dict)
    return pod


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = _pod(workload)["containers"]
    assert len(containers) == 1, "one container per pod: the image runs one process kind"
    container = containers[0]
    assert isinstance(container, dict)
    return container


def _config(objects: list[dict[str, Any]]) -> dict[str, str]:
    maps = [o for o in objects if o["kind"] == "ConfigMap"]
    assert len(maps) == 1
    data = maps[0]["data"]
    assert isinstance(data, dict)
    return data


def _allowed_variables() -> set[str]:
    """Every REFRACTURE_* variable the code reads: a Settings field, or one read from os.environ directly."""
    names = {f"REFRACTURE_{name.upper()}" for name in Settings.model_fields}
    direct = re.compile(r"""(?:environ\.get\(|environ\[|getenv\()\s*["'](REFRACTURE_[A-Z0-9_]+)["']""")
    for folder in ("service", "workers"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(direct.findall(path.read_text(encoding="utf-8")))
    return names


def _is_setting(variable: str, allowed: set[str]) -> bool:
    if variable in allowed:
        return True
    # Nested settings: REFRACTURE_ALERTS__DENOSUMAB_OVERDUE_DAYS is alerts.denosumab_overdue_days.
    outer, _, inner = variable.removeprefix("REFRACTURE_").partition("__")
    field = Settings.model_fields.get(outer.lower())
    if not inner or field is None or field.default is None:
        return False
    return hasattr(field.default, inner.lower())


# --- Dockerfile ---------------------------------------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile(tmp_path: Path) -> None:
    # A private config home: a developer's own hadolint.yaml must not relax the check.
    done = subprocess.run(
        [_tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=tmp_path,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_installs_the_package_into_a_venv_and_runs_refracture_as_a_numeric_non_root_user() -> None:
    instructions = _dockerfile_instructions()
    stages = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage: the build tools stay in the builder"
    base = next(arguments for keyword, arguments in instructions if keyword == "ARG" and "PYTHON_IMAGE=" in arguments)
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim(-\w+)?", base), base
    installs = [a for k, a in instructions if k == "RUN" and ("pip install" in a or "install-wheel.sh" in a)]
    assert installs, "the package is installed with pip"
    assert all("[test" not in a and "-e " not in a for a in installs), "no editable install, no test extra"
    final = _final_stage()
    assert any(k == "COPY" and a.startswith("--from=builder") for k, a in final), "the venv comes from the builder"
    users = [a for k, a in final if k == "USER"]
    assert users, "the runtime stage names a USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric, so that Kubernetes' runAsNonRoot can check it"
    assert int(uid) != 0
    assert [_exec_form(a) for k, a in final if k == "ENTRYPOINT"] == [["refracture"]]
    assert [_exec_form(a) for k, a in final if k == "CMD"] == [["api", "--host", "0.0.0.0"]]


def test_the_dockerignore_lets_in_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list: nothing reaches the context unless named"
    allowed = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for keyword, arguments in _dockerfile_instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            copied |= {Path(source).as_posix().rstrip("/") for source in shlex.split(arguments)[:-1]}
    assert copied <= allowed, f"COPY of something .dockerignore leaves out: {copied - allowed}"
    assert not {".venv", "tests", ".git", "deploy"} & allowed


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[HandlerServer]:
    server = HandlerServer(_Health)
    yield server
    server.close()


@pytest.mark.parametrize("status", [200, 503])
def test_the_healthcheck_command_passes_on_200_and_fails_otherwise(
    health_server: HandlerServer, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HEALTHCHECK's own command, run here against a stand-in that answers /healthz."""
    monkeypatch.setattr(_Health, "status", status)
    healthcheck = next(a for k, a in _dockerfile_instructions() if k == "HEALTHCHECK")
    command = _exec_form(healthcheck.split(" CMD ", 1)[1])
    assert command[0] == "python", "slim has no curl: Python's urllib asks"
    env = {**os.environ, "REFRACTURE_API_PORT": str(health_server.port)}
    done = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False)
    assert (done.returncode == 0) == (status == 200)


# --- compose ------------------------------------------------------------------------------------------------------


def test_the_compose_file_fits_the_compose_specification() -> None:
    # check-jsonschema ships the compose-spec schema (vendor.compose-spec): no download.
    done = _run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_starts_things_in_order_and_waits_only_on_real_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "hapi", "migrate", "api", "worker", "beat"} <= set(services)
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"].get("restart") == "no", "a one-shot"
    for name in ("api", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            if rule["condition"] == "service_healthy":
                check = services[target].get("healthcheck", {})
                assert check.get("test"), f"{name} waits on {target}, which has no check"
                assert not check.get("disable"), f"{name} waits on {target}, whose check is off"
    # Only the API answers /healthz (the image's HEALTHCHECK); the others have their own check or none.
    for name in ("migrate", "worker", "beat"):
        assert "healthcheck" in services[name], name
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])


def test_compose_points_refracture_at_the_hapi_server(compose: dict[str, Any]) -> None:
    hapi = compose["services"]["hapi"]
    image, _, tag = hapi["image"].partition(":")
    assert image == "hapiproject/hapi"
    assert tag
    for name, service in _refracture_services(compose).items():
        assert _environment(service)["REFRACTURE_EHR_BASE_URL"] == "http://hapi:8080/fhir", name


def test_compose_publishes_ports_on_localhost_only(compose: dict[str, Any]) -> None:
    # A developer's stack with development tokens: nothing else may reach it.
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def _generate(folder: Path) -> str:
    """Run the compose stack's dev-secrets step (deploy/dev-secrets/generate.sh) into a folder; what it printed."""
    folder.mkdir(exist_ok=True)
    done = subprocess.run(["sh", str(GENERATE), str(folder)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _mount(service: dict[str, Any], volume: str) -> str:
    """Where a service mounts a named volume."""
    for entry in service.get("volumes", []):
        source, target = str(entry).split(":")[:2]
        if source == volume:
            return target
    raise AssertionError(f"{volume} is not mounted")


def test_compose_settings_and_generated_secrets_make_valid_settings(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What each refracture container would read: its variables, and the generated files mounted where it looks."""
    generated = tmp_path / "dev-secrets"
    printed = _generate(generated)
    password = (generated / "postgres_password").read_text(encoding="utf-8").strip()
    tokens = json.loads((generated / "refracture_auth_dev_tokens").read_text(encoding="utf-8"))
    assert all(token in printed for token in tokens), "the dev-secrets service prints the tokens, as the demo does"
    for name, service in _refracture_services(compose).items():
        env = _environment(service)
        assert env["REFRACTURE_SECRETS_DIR"] == _mount(service, "dev-secrets"), name
        assert str(service["volumes"][0]).endswith(":ro"), f"{name}: read-only"
        for variable in [v for v in os.environ if v.startswith("REFRACTURE_")]:
            monkeypatch.delenv(variable)
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        monkeypatch.delenv("REFRACTURE_SECRETS_DIR")
        settings = Settings(_secrets_dir=generated)
        url = settings.database_url.get_secret_value()
        assert url.startswith(f"postgresql://refracture:{password}@postgres:5432/"), name
        assert set(settings.dev_tokens) == set(tokens), name
        assert settings.environment == "development", "named: production is the default"
    postgres = compose["services"]["postgres"]
    folder = _mount(postgres, "dev-secrets")
    assert _environment(postgres)["POSTGRES_PASSWORD_FILE"] == f"{folder}/postgres_password"
    assert postgres["depends_on"]["dev-secrets"]["condition"] == "service_completed_successfully"
    assert compose["services"]["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_no_bearer_token_or_password_is_committed_and_each_stack_makes_its_own(tmp_path: Path) -> None:
    committed = sorted(p.name for p in (DEPLOY / "dev-secrets").iterdir())
    assert committed == ["README.md", "generate.sh"]
    assert "secrets" not in yaml.safe_load(COMPOSE.read_text(encoding="utf-8")), "no secret files from git"
    _generate(tmp_path / "one")
    first = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "one").iterdir()}
    _generate(tmp_path / "one")  # a restart keeps them: the database was initialised with that password
    assert {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "one").iterdir()} == first
    _generate(tmp_path / "two")
    second = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "two").iterdir()}
    assert set(first) == set(second) == {"postgres_password", "refracture_database_url", "refracture_auth_dev_tokens"}
    assert not set(json.loads(first["refracture_auth_dev_tokens"])) & set(
        json.loads(second["refracture_auth_dev_tokens"])
    )
    assert first["postgres_password"] != second["postgres_password"]
    for token in json.loads(first["refracture_auth_dev_tokens"]):
        assert len(token) == 32, "24 random bytes"


def test_compose_containers_are_locked_down(compose: dict[str, Any]) -> None:
    for name, service in _refracture_services(compose).items():
        assert service.get("read_only") is True, name
        assert "/tmp" in service.get("tmpfs", []), name
        assert service.get("cap_drop") == ["ALL"], name
        assert str(service.get("user", "10001")).split(":")[0] not in ("0", "root"), name


# --- Kubernetes ---------------------------------------------------------------------------------------------------


def test_every_rendered_object_fits_the_kubernetes_api(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ConfigMap",
            "Service",
            "Deployment",
            "Deployment",
            "Deployment",
            "PodDisruptionBudget",
            "Job",
        ]
    )
    problems = []
    for version in K8S_VERSIONS:
        for obj in rendered:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{version} {obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert problems == []


def test_the_base_renders_on_its_own_and_is_production(kubectl: str) -> None:
    objects = _render(kubectl, K8S / "base")
    assert _config(objects)["REFRACTURE_ENVIRONMENT"] == "production"
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"} == {
        "refracture-api",
        "refracture-worker",
        "refracture-beat",
    }


def test_the_documented_first_apply_starts_the_migration_and_nothing_else(rendered: list[dict[str, Any]]) -> None:
    """deploy/README.md applies what the Job needs before the new API and workers: the selector must pick just that."""
    found = re.search(r"-l '([\w./-]+) notin \(([\w,]+)\)'", README.read_text(encoding="utf-8"))
    assert found, "the README's first apply with a label selector"
    key, values = found.group(1), set(found.group(2).split(","))
    picked = {o["kind"] for o in rendered if o["metadata"].get("labels", {}).get(key) not in values}
    assert picked == {"ServiceAccount", "ConfigMap", "Job"}


def test_api_and_worker_are_separately_scaled_and_beat_is_a_singleton(rendered: list[dict[str, Any]]) -> None:
    workloads = _workloads(rendered)
    assert workloads["refracture-api"]["spec"]["replicas"] >= 2
    assert workloads["refracture-worker"]["spec"]["replicas"] >= 2
    beat = workloads["refracture-beat"]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"]["type"] == "Recreate", "a rolling update would run two schedulers for a while"
    pdbs = [o for o in rendered if o["kind"] == "PodDisruptionBudget"]
    assert pdbs[0]["spec"]["selector"] == workloads["refracture-api"]["spec"]["selector"]


def test_the_migration_job_runs_refracture_migrate(rendered: list[dict[str, Any]]) -> None:
    job = _workloads(rendered)["refracture-migrate"]
    assert job["kind"] == "Job"
    assert _container(job)["args"] == ["migrate"]
    assert _pod(job)["restartPolicy"] == "Never"


def _routes() -> set[str]:
    """The API's paths: the OpenAPI document's, and the operations router's (/metrics is left out of the document)."""
    from fastapi.routing import APIRoute

    from service.entrypoints.api import health
    from service.entrypoints.api.openapi import openapi_document

    operations = {route.path for route in health.router.routes if isinstance(route, APIRoute)}
    return set(openapi_document()["paths"]) | operations


def test_api_probes_ask_routes_that_exist(rendered: list[dict[str, Any]]) -> None:
    routes = _routes()
    api = _workloads(rendered)["refracture-api"]
    container = _container(api)
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    args = container["args"]
    for probe in probes.values():
        assert probe["path"] in routes
        assert ports[probe["port"]] == int(args[args.index("--port") + 1])
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in routes
    assert int(annotations["prometheus.io/port"]) in ports.values()
    service = next(o for o in rendered if o["kind"] == "Service")
    assert all(port["targetPort"] in ports for port in service["spec"]["ports"])
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    healthcheck = next(a for k, a in _dockerfile_instructions() if k == "HEALTHCHECK")
    assert all(path in routes for path in re.findall(r"'(/\w+)'", healthcheck))


def test_worker_probes_ping_the_celery_app(rendered: list[dict[str, Any]]) -> None:
    from celery import Celery

    import workers.celery_app

    assert isinstance(workers.celery_app.app, Celery), "celery -A workers.celery_app finds `app`"
    worker = _workloads(rendered)["refracture-worker"]
    container = _container(worker)
    for kind in ("livenessProbe", "readinessProbe"):
        command = " ".join(container[kind]["exec"]["command"])
        assert "celery -A workers.celery_app inspect ping" in command
        # Celery names a worker celery@<hostname>; only this pod's worker may answer for it.
        assert '--destination "celery@$HOSTNAME"' in command
        assert command.startswith("sh -c"), "exec probes do not expand $HOSTNAME; a shell does"
    args = container["args"]
    metrics_port = int(args[args.index("--metrics-port") + 1])
    assert int(worker["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]) == metrics_port
    assert {"name": "PROMETHEUS_MULTIPROC_DIR", "value": "/run/refracture-metrics"} in container["env"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod(worker)["volumes"]}
    assert "emptyDir" in volumes[mounts["/run/refracture-metrics"]], "must start empty with the pod"


def test_pods_run_as_non_root_with_a_read_only_root_and_no_capabilities(rendered: list[dict[str, Any]]) -> None:
    for name, workload in _workloads(rendered).items():
        pod = _pod(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        # A Service named refracture-api would otherwise inject REFRACTURE_API_PORT=tcp://…, which Settings refuses.
        assert pod["enableServiceLinks"] is False, name
        container = _container(workload)
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp must be writable"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name}: {kind}"


def test_secrets_come_from_the_cluster_at_the_secrets_dir(rendered: list[dict[str, Any]]) -> None:
    assert not [o for o in rendered if o["kind"] == "Secret"], "the Secret is the platform team's, not the repo's"
    config = _config(rendered)
    secrets_dir = config["REFRACTURE_SECRETS_DIR"]
    for name, workload in _workloads(rendered).items():
        container = _container(workload)
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts[secrets_dir]["readOnly"] is True, name
        volumes = {v["name"]: v for v in _pod(workload)["volumes"]}
        # Only the migration Job holds the schema owner's URL; everything else runs as the runtime role.
        expected = "refracture-migrate-secrets" if name == "refracture-migrate" else "refracture-secrets"
        assert volumes[mounts[secrets_dir]["name"]]["secret"]["secretName"] == expected, name
        config_maps = [source["configMapRef"]["name"] for source in container["envFrom"]]
        assert config_maps == [next(o for o in rendered if o["kind"] == "ConfigMap")["metadata"]["name"]], name
    key_file = Path(config["REFRACTURE_EHR_PRIVATE_KEY_FILE"])
    assert str(key_file.parent) == secrets_dir, "the EHR key is a file of the same Secret"


def test_no_secret_setting_is_a_plain_variable_in_kubernetes(rendered: list[dict[str, Any]]) -> None:
    plain = set(_config(rendered))
    for workload in _workloads(rendered).values():
        plain |= {item["name"] for item in _container(workload).get("env", [])}
    leaked = {v for v in plain if v.removeprefix("REFRACTURE_").lower() in SECRET_FIELDS}
    assert leaked == set()


def test_the_production_config_makes_valid_production_settings(
    rendered: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(rendered)
    for variable in [v for v in os.environ if v.startswith("REFRACTURE_")]:
        monkeypatch.delenv(variable)
    for variable, value in config.items():
        if variable != "REFRACTURE_SECRETS_DIR":
            monkeypatch.setenv(variable, value)
    settings = Settings(_secrets_dir=tmp_path)
    assert settings.environment == "production"
    assert settings.ehr_base_url
    assert not settings.dev_tokens


def _tag(image: str) -> str:
    """The tag of name:tag or name:tag@sha256:…; empty when there is none."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    return last.partition(":")[2]


def test_images_are_pinned(rendered: list[dict[str, Any]], compose: dict[str, Any]) -> None:
    cluster = [_container(w)["image"] for w in _workloads(rendered).values()]
    assert all(image.startswith("registry.hospital.example/refracture:") for image in cluster), cluster
    others = [s["image"] for s in compose["services"].values() if "build" not in s]
    for image in cluster + others:
        tag = _tag(image)
        assert tag, f"{image}: no tag"
        assert tag != "latest", image
        assert re.search(r"\d", tag), f"{image}: a version, not a moving name"


# --- the files agree with the code --------------------------------------------------------------------------------


def _deploy_texts() -> dict[str, str]:
    paths = [DOCKERFILE, COMPOSE, README, *K8S.rglob("*.yaml")]
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in paths}


def test_every_refracture_variable_named_is_a_setting(compose: dict[str, Any]) -> None:
    allowed = _allowed_variables()
    unknown = sorted(
        f"{name}: {variable}"
        for name, text in _deploy_texts().items()
        for variable in set(_VARIABLE.findall(text))
        if not _is_setting(variable, allowed)
    )
    assert unknown == []
    # Secret files are named like the variable, in lower case (refracture_database_url).
    generated = re.findall(r'"\$dir/(refracture_\w+)"', GENERATE.read_text(encoding="utf-8"))
    assert generated
    assert [t for t in generated if not _is_setting(t.upper(), allowed)] == []


def test_the_documented_secret_keys_are_settings(rendered: list[dict[str, Any]]) -> None:
    """The keys of refracture-secrets in deploy/README.md's `kubectl create secret` example."""
    text = README.read_text(encoding="utf-8")
    keys = re.findall(r"--from-(?:file|literal)=([\w.-]+)=", text)
    assert "refracture_database_url" in keys
    assert "refracture_redis_url" in keys
    config = _config(rendered)
    key_file = Path(config["REFRACTURE_EHR_PRIVATE_KEY_FILE"]).name
    allowed = _allowed_variables()
    assert [k for k in keys if k != key_file and not _is_setting(k.upper(), allowed)] == []
    assert key_file in keys


def _commands(compose: dict[str, Any], rendered: list[dict[str, Any]]) -> list[list[str]]:
    found = [_exec_form(a) for k, a in _final_stage() if k == "CMD"]
    found += [list(s["command"]) for s in _refracture_services(compose).values()]
    found += [list(_container(w)["args"]) for w in _workloads(rendered).values()]
    # deploy/README.md's one-shot commands: `kubectl exec … -- refracture …`, `compose exec api refracture …`, and
    # `.venv/bin/refracture …`.
    used = re.findall(r"(?:-- |exec [\w-]+ |bin/)refracture ([^\n`]+)", README.read_text(encoding="utf-8"))
    found += [shlex.split(line, comments=True) for line in used]
    return found


def test_every_refracture_command_used_exists_and_its_options_parse(
    compose: dict[str, Any], rendered: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    called: list[str] = []
    for command in COMMANDS.values():
        monkeypatch.setattr(command.module(), "run", lambda args, name=command.name: called.append(name) or 0)
    monkeypatch.setattr(cli, "configure_logging", lambda: None)
    monkeypatch.setattr(cli, "log_start", lambda command: None)  # about parsing: no settings read
    commands = _commands(compose, rendered)
    assert len(commands) >= 9
    for argv in commands:
        try:
            assert cli.main(argv) == 0, argv
        except SystemExit as exc:
            pytest.fail(f"`refracture {' '.join(argv)}` does not parse (exit {exc.code})")
    assert {"api", "worker", "beat", "migrate"} <= set(called)
