"""The demo's supervision without servers: a process that exits is named with its last lines; the worker's deadline.

The whole demo runs in tests/newcomer (with --check, and with its worker killed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from service.entrypoints import demo


def _child(supervisor: demo._Supervisor, name: str, code: str) -> demo._Child:
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    child = demo._Child(name, process)
    child.reader = threading.Thread(target=supervisor._pump, args=(child,), daemon=True)
    child.reader.start()
    supervisor.children.append(child)
    return child


def test_a_process_that_exits_is_named_and_its_last_lines_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    supervisor = demo._Supervisor({})
    lines = "; ".join(f"print('line {n}')" for n in range(demo.TAIL_LINES + 5))
    child = _child(supervisor, "worker", f"{lines}; print('ModuleNotFoundError: packaging'); raise SystemExit(3)")
    child.process.wait(timeout=30)
    with pytest.raises(demo.ProcessExited) as exited:
        supervisor.check()
    assert str(exited.value) == f"the worker process (pid {child.process.pid}) exited with status 3"
    assert exited.value.process == "worker"
    report = demo._report(supervisor, exited.value)
    assert report[-1] == "the other processes were stopped; exit status 1"
    assert report[1] == f"the last {demo.TAIL_LINES} lines of the worker process:"
    assert report[-2] == "  ModuleNotFoundError: packaging"
    assert "  line 0" not in report, "only the tail is kept"
    # Everything was also shown as it came, with the process's name.
    assert "worker | ModuleNotFoundError: packaging" in capsys.readouterr().out


def test_a_process_killed_by_a_signal_is_reported_as_such() -> None:
    supervisor = demo._Supervisor({})
    child = _child(supervisor, "beat", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    child.process.wait(timeout=30)
    with pytest.raises(demo.ProcessExited, match=r"the beat process \(pid \d+\) was killed by SIGKILL"):
        supervisor.check()
    assert demo._report(supervisor, demo.DemoFailure("x", "beat"))[1] == "the beat process wrote nothing"


def test_stop_all_ends_running_processes_and_what_they_started() -> None:
    supervisor = demo._Supervisor({})
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        "print('up', flush=True); time.sleep(600)"
    )
    child = _child(supervisor, "api", code)
    supervisor.stop_all()
    assert child.process.poll() is not None
    # Its own child (in its process group) is gone too, once reaped by whoever inherited it.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(child.process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail("a process of the stopped group is still there")


def test_a_worker_that_does_not_finish_in_time_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "_processed", lambda _url, _ids: 1)
    with pytest.raises(demo.DemoFailure, match=r"the worker processed 1 of 3 patients within 0 s") as failure:
        demo._wait_for_worker(demo._Supervisor({}), "postgresql://unused", ["a", "b", "c"], timeout_s=0.0)
    assert failure.value.process == "worker"
