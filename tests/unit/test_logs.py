"""Logging: one JSON object per line, the request id on every line of a request, and no patient data in any line."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError

from service.devtools.local_services import free_port
from service.entrypoints.api.middleware import AccessLogMiddleware, RequestIdMiddleware
from service.platform.config import Settings
from service.platform.log_redaction import handling_patient_data
from service.platform.logs import REQUEST_ID, JsonFormatter, TextFormatter, configure_logging, log_format, log_level
from service.usecases.relay import Relay
from tests.support.clock import ManualClock
from tests.support.fakes import MemoryOutboxStore

NAME = "Zyxquorthian"


class Lines(logging.Handler):
    """Every record, formatted as a refracture process formats it."""

    def __init__(self, formatter: logging.Formatter | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter or JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def restored() -> Iterator[None]:
    """Whatever configure_logging changes, put back for the tests after this one."""
    names = ("", "httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in map(logging.getLogger, names)]
    hook = sys.excepthook
    yield
    logging.captureWarnings(False)
    sys.excepthook = hook
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture
def lines(restored: None) -> Iterator[Lines]:
    """All loggers at DEBUG, captured through the JSON formatter."""
    configure_logging("json", "DEBUG")
    handler = Lines()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def test_a_line_is_one_json_object_with_time_level_logger_message(lines: Lines) -> None:
    logging.getLogger("refracture.test").info(
        "read %s", "Patient/p1", extra={"fields": {"resource_type": "Patient", "resource_id": "p1"}}
    )
    (line,) = lines.lines
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "INFO"
    assert parsed["logger"] == "refracture.test"
    assert parsed["message"] == "read Patient/p1"
    assert parsed["time"].endswith("+00:00")
    assert (parsed["resource_type"], parsed["resource_id"]) == ("Patient", "p1")
    assert "request_id" not in parsed  # none outside a request


def test_the_request_id_is_on_every_line_logged_while_it_is_set(lines: Lines) -> None:
    token = REQUEST_ID.set("req-1")
    try:
        logging.getLogger("anything").warning("inside")
    finally:
        REQUEST_ID.reset(token)
    logging.getLogger("anything").warning("outside")
    inside, outside = lines.parsed()
    assert inside["request_id"] == "req-1"
    assert "request_id" not in outside


def test_exception_messages_and_locals_never_reach_a_line(lines: Lines) -> None:
    patient_name = NAME  # a local a traceback printer with locals would show
    known: dict[str, str] = {}
    try:
        try:
            known[patient_name]
        except KeyError as inner:
            raise ValueError(f"no such patient {patient_name}") from inner
    except ValueError as exc:
        logging.getLogger("refracture.test").exception("failed: %r (%s)", exc, exc)
    (line,) = lines.lines
    assert NAME not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed: ValueError (ValueError)"
    assert parsed["exc_type"] == ["ValueError", "KeyError"]
    assert any("test_exception_messages_and_locals_never_reach_a_line" in frame for frame in parsed["exc_frames"])


def test_a_pydantic_validation_error_logged_by_anyone_keeps_only_its_type(lines: Lines) -> None:
    class Person(BaseModel):
        birth_year: int

    try:
        Person.model_validate({"birth_year": NAME})
    except ValidationError as exc:
        logging.getLogger("some.library").error("invalid: %s", exc, exc_info=True)
    assert NAME not in lines.lines[0]
    assert json.loads(lines.lines[0])["exc_type"] == ["pydantic_core._pydantic_core.ValidationError"]


def test_celery_failure_lines_keep_the_exception_type_only(lines: Lines) -> None:
    context = {
        "name": "refracture.patients_changed",
        "id": "t-1",
        "description": "raised unexpected",
        "exc": f"RefractureError('invalid value {NAME!r}')",
        "args": f"[{NAME!r}]",
        "traceback": f"Traceback ... {NAME}",
    }
    logging.getLogger("celery.app.trace").error(
        "Task %(name)s[%(id)s] %(description)s: %(exc)s", context, extra={"data": context}
    )
    (line,) = lines.lines
    assert NAME not in line  # neither the message nor Celery's "data" extra
    assert json.loads(line)["message"] == "Task refracture.patients_changed[t-1] raised unexpected: RefractureError"


def test_warnings_keep_their_category_and_place_but_not_their_text(lines: Lines) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(True)  # catch_warnings put the previous hook back
        warnings.warn(f"Expected `int` but got `str` with value `{NAME}`", UserWarning, stacklevel=1)
    (line,) = lines.lines
    assert NAME not in line
    assert json.loads(line)["message"].startswith("UserWarning at ")


def test_httpx_request_lines_are_not_logged_even_at_debug(lines: Lines) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    with httpx.Client(transport=transport) as client:
        client.get(f"http://ehr.example/fhir/Patient?name={NAME}")
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING
    assert not [line for line in lines.lines if NAME in line]


def test_uvicorn_access_lines_are_dropped_even_if_uvicorn_logs_them(restored: None, capsys: Any) -> None:
    configure_logging("json", "DEBUG")
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1", "GET", f"/x?q={NAME}", "1.1", 200)
    logging.getLogger("uvicorn.error").info("Started server process")
    err = capsys.readouterr().err
    assert NAME not in err
    assert "Started server process" in err


def test_an_uncaught_exception_is_logged_without_its_message(restored: None, capsys: Any) -> None:
    configure_logging("json", "INFO")
    try:
        raise RuntimeError(NAME)
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert NAME not in err
    assert json.loads(err)["message"] == "uncaught RuntimeError"


def test_text_format_for_people_withholds_the_same(restored: None) -> None:
    handler = Lines(TextFormatter())
    logger = logging.getLogger("refracture.text")
    logger.addHandler(handler)
    try:
        try:
            raise LookupError(NAME)
        except LookupError:
            logger.error("lookup failed", exc_info=True)
    finally:
        logger.removeHandler(handler)
    (text,) = handler.lines
    assert NAME not in text
    assert " ERROR refracture.text: lookup failed\n  LookupError (message withheld)" in text


def test_format_and_level_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFRACTURE_LOG_FORMAT", raising=False)
    monkeypatch.delenv("REFRACTURE_LOG_LEVEL", raising=False)
    assert (log_format(), log_level()) == ("json", "INFO")
    monkeypatch.setenv("REFRACTURE_LOG_FORMAT", "TEXT")
    monkeypatch.setenv("REFRACTURE_LOG_LEVEL", "debug")
    assert (log_format(), log_level()) == ("text", "DEBUG")
    monkeypatch.setenv("REFRACTURE_LOG_LEVEL", "trace")  # uvicorn's TRACE logs whole bodies
    with pytest.raises(ValueError, match="REFRACTURE_LOG_LEVEL"):
        log_level()
    monkeypatch.setenv("REFRACTURE_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="REFRACTURE_LOG_FORMAT"):
        log_format()


# --- the API's access log ----------------------------------------------------------------------------------------


def small_app() -> FastAPI:
    app = FastAPI()
    inner = logging.getLogger("refracture.route")

    @app.get("/patients/{patient_id}")
    def read(patient_id: str) -> dict[str, str]:  # sync: runs in the thread pool, the request id goes along
        inner.info("read Patient/%s", patient_id)
        return {"id": patient_id}

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError(NAME)

    @app.exception_handler(Exception)
    async def unexpected(_: Any, exc: Exception) -> Any:
        from starlette.responses import PlainTextResponse

        logging.getLogger("refracture.errors").error("unexpected %s", type(exc).__name__)
        return PlainTextResponse("internal error", status_code=500)

    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


def test_the_access_log_names_the_route_template_never_the_path_or_query(lines: Lines) -> None:
    with TestClient(small_app()) as client:
        response = client.get("/patients/MRN-4711", params={"q": NAME}, headers={"X-Request-Id": "abc-123"})
    assert response.status_code == 200
    assert not [line for line in lines.lines if NAME in line]
    access = [line for line in lines.parsed() if line["logger"] == "refracture.access"]
    assert not [line for line in access if "MRN-4711" in json.dumps(line)]  # an id in a path can be an MRN
    assert len(access) == 1
    assert access[0]["message"].startswith("GET /patients/{patient_id} 200 ")
    assert {k: access[0][k] for k in ("method", "route", "status", "request_id")} == {
        "method": "GET",
        "route": "/patients/{patient_id}",
        "status": 200,
        "request_id": "abc-123",
    }
    assert access[0]["duration_ms"] >= 0
    (route_line,) = [line for line in lines.parsed() if line["logger"] == "refracture.route"]
    assert route_line["request_id"] == "abc-123"  # lines logged by the route carry the id too


def test_the_access_log_covers_unmatched_routes_and_failures(lines: Lines) -> None:
    with TestClient(small_app(), raise_server_exceptions=False) as client:
        assert client.get(f"/nowhere/{NAME}").status_code == 404
        failed = client.get("/broken", headers={"X-Request-Id": "req-500"})
    assert failed.status_code == 500
    assert not [line for line in lines.lines if NAME in line]
    access = {line["route"]: line for line in lines.parsed() if line["logger"] == "refracture.access"}
    assert access["unmatched"]["status"] == 404
    assert (access["/broken"]["status"], access["/broken"]["level"]) == (500, "WARNING")
    (error,) = [line for line in lines.parsed() if line["logger"] == "refracture.errors"]
    assert error["request_id"] == "req-500"  # the server's error handler runs outside, in the same request


# --- what an exception may say (docs/security.md, "What an error may say in a log") -------------------------------


def test_a_missing_module_is_named_with_the_fix(lines: Lines) -> None:
    try:
        import refracture_no_such_module  # type: ignore[import-not-found]  # noqa: F401
    except ModuleNotFoundError as exc:
        logging.getLogger("refracture.test").error("could not start (%s)", exc, exc_info=True)
    (line,) = lines.parsed()
    fix = "install refracture with its dependencies: pip install ."
    assert (
        line["message"] == f"could not start (ModuleNotFoundError: No module named 'refracture_no_such_module' ({fix}))"
    )
    assert line["exc_type"] == ["ModuleNotFoundError"]
    assert line["exc_message"] == ["No module named 'refracture_no_such_module'"]
    assert line["hint"] == fix


def test_a_missing_private_server_package_points_at_the_local_extra(lines: Lines) -> None:
    logging.getLogger("refracture.test").error("%s", ModuleNotFoundError("No module named 'pgserver'", name="pgserver"))
    assert "pip install 'refracture[local]'" in lines.parsed()[0]["message"]


def test_the_relay_names_the_missing_module_of_the_broker_transport(lines: Lines) -> None:

    class BrokenTransport:
        def send(self, task_name: str, args: Any) -> None:
            raise ModuleNotFoundError("No module named 'packaging'", name="packaging")

    store, clock = MemoryOutboxStore(), ManualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    store.mark_changed(["p"], clock.now)
    relay = Relay(store, BrokenTransport(), clock, redeliver_after_s=60, batch_size=2, chunk_size=2)
    assert relay.ring() == 0
    (line,) = [line for line in lines.parsed() if line["logger"] == "service.usecases.relay"]
    assert line["message"] == (
        "relay could not publish (ModuleNotFoundError: No module named 'packaging' (install refracture with its "
        "dependencies: pip install .)); the outbox keeps the changes"
    )


def test_a_refused_database_connection_shows_the_address_and_the_setting_but_not_the_password(lines: Lines) -> None:

    port = free_port()
    url = f"postgresql://refracture:{NAME}@127.0.0.1:{port}/refracture"
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(url, connect_timeout=2)
    # A message that quotes the URL (as a driver might) is masked too.
    wrapped = ConnectionError(f"could not reach {url}")
    logging.getLogger("refracture.test").error("no database: %s; %s", raised.value, wrapped, exc_info=raised.value)
    (line,) = lines.lines
    assert NAME not in line
    parsed = json.loads(line)
    assert f"port {port} failed: Connection refused" in parsed["message"]
    assert f"postgresql://refracture:***@127.0.0.1:{port}/refracture" in parsed["message"]
    assert "REFRACTURE_DATABASE_URL" in parsed["hint"]
    assert f"port {port}" in parsed["exc_message"][0]


def test_a_refused_broker_connection_names_its_setting(lines: Lines) -> None:

    port = free_port()
    client = redis.Redis.from_url(f"redis://:{NAME}@127.0.0.1:{port}/0", socket_connect_timeout=1)
    try:
        with pytest.raises(redis.ConnectionError) as raised:
            client.ping()
    finally:
        client.close()
    logging.getLogger("refracture.test").warning("broker: %s", raised.value)
    (line,) = lines.lines
    assert NAME not in line
    message = json.loads(line)["message"]
    assert f"127.0.0.1:{port}" in message
    assert "REFRACTURE_REDIS_URL" in message


def test_a_patients_name_in_a_validation_error_is_withheld_even_outside_patient_data_handling(lines: Lines) -> None:

    class HumanName(BaseModel):
        family: int

    with handling_patient_data(False), pytest.raises(ValidationError) as raised:
        HumanName.model_validate({"family": NAME})
    with handling_patient_data(False):
        logging.getLogger("refracture.test").error("invalid: %s", raised.value, exc_info=raised.value)
    (line,) = lines.lines
    assert NAME not in line
    parsed = json.loads(line)
    assert parsed["message"] == "invalid: pydantic_core._pydantic_core.ValidationError"
    assert parsed["exc_message"] == [None]


def test_a_postgresql_error_detail_is_withheld_even_outside_patient_data_handling(lines: Lines) -> None:

    duplicate = psycopg.errors.UniqueViolation(
        f'duplicate key value violates unique constraint "x"\nDETAIL:  Key (name)=({NAME}) already exists.'
    )
    cancelled = psycopg.errors.QueryCanceled(f"canceling statement due to statement timeout {NAME}")
    with handling_patient_data(False):
        logging.getLogger("refracture.test").error("failed: %s, %s", duplicate, cancelled)
    (line,) = lines.parsed()
    assert NAME not in json.dumps(line)
    assert line["message"] == "failed: psycopg.errors.UniqueViolation, psycopg.errors.QueryCanceled"


def test_other_messages_are_shown_only_outside_patient_data_handling(lines: Lines) -> None:

    logging.getLogger("refracture.test").error("%s", RuntimeError(f"no such patient {NAME}"))  # the default: withheld
    with handling_patient_data(False):
        logging.getLogger("refracture.test").error("%s", RuntimeError("the schedule file is empty"))
        with handling_patient_data():
            logging.getLogger("refracture.test").error("%s", RuntimeError(f"no such patient {NAME}"))
    assert [line["message"] for line in lines.parsed()] == [
        "RuntimeError",
        "RuntimeError: the schedule file is empty",
        "RuntimeError",
    ]


def test_a_bad_setting_is_named_without_its_value(lines: Lines, monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setenv("REFRACTURE_DATABASE_POOL_MAX", f"postgresql://u:{NAME}@db/x")
    monkeypatch.setenv("REFRACTURE_ENVIRONMENT", "production")
    monkeypatch.setenv("REFRACTURE_AUTH_DEV_TOKENS", json.dumps({NAME: {"sub": "x"}}))
    with pytest.raises(ValidationError) as raised:
        Settings()
    sys.excepthook(type(raised.value), raised.value, raised.value.__traceback__)
    (line,) = lines.parsed()
    assert NAME not in json.dumps(line)
    assert line["message"].startswith(
        "uncaught invalid settings: REFRACTURE_DATABASE_POOL_MAX: Input should be a valid"
    )
    assert line["hint"].startswith("fix the settings named")


def test_text_format_shows_what_may_be_shown_and_the_hint(restored: None) -> None:
    handler = Lines(TextFormatter())
    logger = logging.getLogger("refracture.text")
    logger.addHandler(handler)
    try:
        try:
            try:
                raise LookupError(NAME)
            except LookupError as inner:
                raise ModuleNotFoundError("No module named 'packaging'", name="packaging") from inner
        except ModuleNotFoundError:
            logger.critical("uncaught", exc_info=True)
    finally:
        logger.removeHandler(handler)
    (text,) = handler.lines
    assert NAME not in text
    assert (
        "uncaught\n  ModuleNotFoundError: No module named 'packaging' <- LookupError (message withheld)\n"
        "  hint: install refracture with its dependencies: pip install .\n"
    ) in text


def test_an_http_protocol_error_which_can_quote_a_header_is_withheld_but_a_refused_connection_is_not(
    lines: Lines,
) -> None:
    logging.getLogger("refracture.test").error(
        "%s / %s",
        httpx.LocalProtocolError(f"Illegal header value b'Bearer {NAME}\\n'"),
        httpx.ConnectError("[Errno 111] Connection refused"),
    )
    (line,) = lines.parsed()
    assert line["message"] == "httpx.LocalProtocolError / httpx.ConnectError: [Errno 111] Connection refused"


def test_a_command_on_no_patient_data_logs_its_failure_with_the_message(
    restored: None, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.entrypoints.cli
    import service.entrypoints.cli.openapi

    def broken(_: Any) -> int:
        raise RuntimeError("the OpenAPI template is missing")

    monkeypatch.setattr(service.entrypoints.cli.openapi, "run", broken)
    assert service.entrypoints.cli.main(["openapi"]) == 1
    (line,) = [json.loads(text) for text in capsys.readouterr().err.splitlines()]
    assert line["message"] == "uncaught RuntimeError: the OpenAPI template is missing"
    logging.getLogger("refracture.test").error("%s", RuntimeError(NAME))  # the default holds again after it
    assert json.loads(capsys.readouterr().err)["message"] == "RuntimeError"
