"""One rule for tests that need something installed: skip on a developer machine, fail under CI.

A CI run that silently skips the real-server tests would prove nothing, so with CI=true a missing
server binary (or missing root) is an error, not a skip.
"""

from __future__ import annotations

import os
import shutil

import pytest

# Daemons live in sbin, which is not on every user's PATH.
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(message: str) -> None:
    """Skip the test with `message`, or fail it under CI=true. Never returns."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: these tests must run)", pytrace=False)
    pytest.skip(message)


def require_binary(name: str, install_hint: str) -> str:
    """Return the full path of program `name`, or skip/fail with `install_hint` when it is missing."""
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None:
        missing(f"{name} not installed: {install_hint}")
    return path


def require_root(what: str) -> None:
    """Skip/fail unless running as root: the mail servers switch to their own system users."""
    if os.geteuid() != 0:
        missing(f"{what} needs root (it starts a real server that drops to its own system users)")
