"""The wheel as deploy/Dockerfile builds it, and virtual environments installed from it as the image is.

The build and the install are the Dockerfile's own commands (``BUILD`` and ``INSTALL``; a test checks that the
Dockerfile says exactly these), run in a folder laid out like the image's build context. A virtual environment is
cached outside the repository (``~/.cache/refracture/newcomer``, or ``$REFRACTURE_NEWCOMER_CACHE``), keyed by the lock,
the install script, the wheel's declared requirements (Requires-Dist), the extras and the Python: while those stay the
same, a run only reinstalls the freshly built wheel into it (``--no-deps``); when the wheel declares a dependency more
or less, the key changes and the environment is made anew, so a dependency dropped from pyproject.toml is missing
there as it would be for a user.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

# The Dockerfile's builder stage runs `BUILD && INSTALL` (tests/newcomer/test_newcomer_path.py checks the line).
BUILD = "python -m pip wheel --no-deps --wheel-dir dist ."
INSTALL = 'sh deploy/install-wheel.sh requirements.lock dist "$EXTRAS"'

_CACHE_FORMAT = "1"  # bump to make every cached environment anew
_KEEP_UNUSED_S = 7 * 24 * 3600
_KEEP_PER_EXTRAS = 3  # the one in use and two before it
_LOCK_WAIT_S = 900.0


def cache_root() -> Path:
    """Where the environments are kept: outside the repository, so a fresh clone on this machine reuses them."""
    configured = os.environ.get("REFRACTURE_NEWCOMER_CACHE")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "refracture" / "newcomer"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    out = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        out.append((keyword.upper(), " ".join(arguments.split())))
    return out


def builder_stage() -> list[tuple[str, str]]:
    """The instructions of the stage named ``builder``."""
    stage: list[tuple[str, str]] = []
    inside = False
    for keyword, arguments in dockerfile_instructions():
        if keyword == "FROM":
            inside = arguments.endswith(" AS builder")
            continue
        if inside:
            stage.append((keyword, arguments))
    return stage


def stage_build_context(destination: Path) -> Path:
    """Lay out what the builder stage COPYs, where it COPYs it (relative to its WORKDIR)."""
    destination.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    for keyword, arguments in builder_stage():
        if keyword != "COPY" or arguments.startswith("--"):
            continue
        *sources, target = shlex.split(arguments)
        for source in sources:
            origin = ROOT / source
            where = destination / target / Path(source).name if target.endswith("/") else destination / target
            where.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, where, ignore=ignore)
            else:
                shutil.copy2(origin, where)
    return destination


@dataclass(frozen=True, slots=True)
class Wheel:
    """The built wheel, the build context it was built in, and what it declares it needs."""

    path: Path
    context: Path
    requires: tuple[str, ...]


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


def build_wheel(context: Path) -> Wheel:
    """Run the Dockerfile's BUILD in a copy of its build context, with this interpreter as ``python``."""
    stage_build_context(context)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = _run(["sh", "-c", BUILD], cwd=context, env=env, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"{BUILD} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    wheels = sorted((context / "dist").glob("refracture-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in dist/, found {wheels}"
    with zipfile.ZipFile(wheels[0]) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode("utf-8")
    requires = tuple(
        sorted(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:"))
    )
    return Wheel(wheels[0], context, requires)


def venv_key(wheel: Wheel, extras: str) -> str:
    """What the environment's dependencies depend on: lock, install script, declared requirements, extras, Python."""
    digest = hashlib.sha256()
    for part in (
        _CACHE_FORMAT,
        (wheel.context / "requirements.lock").read_text(encoding="utf-8"),
        (wheel.context / "deploy" / "install-wheel.sh").read_text(encoding="utf-8"),
        "\n".join(wheel.requires),
        extras,
        sys.version,
        sys.platform,
    ):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()[:24]


def install_env(venv: Path, extras: str) -> dict[str, str]:
    """The environment INSTALL runs in: the venv's ``python`` first on PATH, EXTRAS set, nothing of ours leaking in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["EXTRAS"] = extras
    return env


def _lock(handle: IO[str], what: str) -> None:
    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} stayed in use by another test run for {_LOCK_WAIT_S:.0f} s") from None
            time.sleep(1.0)


def _prune(root: Path, keep: Path) -> None:
    """Remove environments of the same extras that no run has used for a week, or beyond the three last used (each
    dependency change makes a new one), unless a run holds them now."""
    prefix = keep.name.rsplit("-", 1)[0] + "-"
    others = sorted(
        (p for p in root.iterdir() if p.is_dir() and p != keep and p.name.startswith(prefix)),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    now = time.time()
    for rank, old in enumerate(others, start=1):
        if rank < _KEEP_PER_EXTRAS and now - old.stat().st_mtime < _KEEP_UNUSED_S:
            continue
        lock_path = root / f"{old.name}.lock"
        with lock_path.open("a") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(old, ignore_errors=True)
        lock_path.unlink(missing_ok=True)


@contextlib.contextmanager
def cached_venv(wheel: Wheel, extras: str = "") -> Iterator[Path]:
    """A virtual environment with ``wheel`` installed by INSTALL (with ``extras``), held for this run alone.

    Yields:
        The environment's folder (its ``bin/refracture`` is the console script).
    """
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"{extras or 'no-extras'}-{venv_key(wheel, extras)}"
    with (root / f"{venv.name}.lock").open("a") as handle:
        _lock(handle, str(venv))
        if (venv / ".complete").is_file():
            # The same dependencies: only this run's wheel is new.
            for command in (
                ["python", "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel.path)],
                ["python", "-m", "pip", "check"],
            ):
                done = _run([str(venv / "bin" / command[0]), *command[1:]], env=install_env(venv, extras), timeout=300)
                if done.returncode != 0:
                    raise AssertionError(f"{' '.join(command)} in {venv} failed:\n{done.stdout}\n{done.stderr}")
        else:
            shutil.rmtree(venv, ignore_errors=True)
            done = _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
            assert done.returncode == 0, f"python -m venv failed:\n{done.stdout}\n{done.stderr}"
            done = _run(["sh", "-c", INSTALL], cwd=wheel.context, env=install_env(venv, extras), timeout=900)
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise AssertionError(
                    f"{INSTALL} with EXTRAS={extras!r} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
                )
            (venv / ".complete").write_text("\n".join(wheel.requires) + "\n", encoding="utf-8")
        os.utime(venv)
        _prune(root, venv)
        yield venv
