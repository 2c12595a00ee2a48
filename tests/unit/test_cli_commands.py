"""The `refracture` parser: every command's options parse, and `--help` imports no command's module (speed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.entrypoints.cli import main
from service.entrypoints.cli.commands import COMMANDS
from tests.support.paths import ROOT


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_its_module_and_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    assert f"usage: refracture {name}" in capsys.readouterr().out


def test_the_list_of_commands_imports_none_of_their_modules() -> None:
    probe = (
        "import sys\n"
        "from service.entrypoints.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('service.entrypoints.cli.') or m in "
        "('service.composition.parts', 'workers.celery_app', 'psycopg')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "['service.entrypoints.cli.commands', 'service.entrypoints.cli.startup']"
