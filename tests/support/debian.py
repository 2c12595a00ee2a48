"""A tool a test needs, installed from Debian's packages when the machine has none (the machine's registries include
Debian's), or the test stopped with why."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from typing import NoReturn

__all__ = ["installed"]


def installed(tool: str, package: str, stop: Callable[[str], NoReturn], hint: str = "") -> str:
    """The tool on the PATH, after ``apt-get install package`` if missing; ``stop`` (pytest.fail or pytest.skip)
    with the reason when it cannot be had. ``hint`` is added to the reason apt-get is absent."""
    found = shutil.which(tool)
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        stop(f"{tool} is missing and there is no apt-get to install it{hint}")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([*sudo, apt, "update", "-q"], [*sudo, apt, "install", "-y", "-q", package]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            stop(f"{tool} is missing and could not be installed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    found = shutil.which(tool)
    if found is None:
        stop(f"apt-get installed {package} but {tool} is not on the PATH")
    return found
