"""Fixtures for the inbound mail tests: where the public mail corpus lives.

The corpus sits next to the repository (../shared/corpus) unless SWITCHBOARD_CORPUS says
otherwise. Without it the corpus tests skip, except under CI=true, where they must run."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"


def corpus_path() -> Path:
    return Path(os.environ.get("SWITCHBOARD_CORPUS") or REPO_ROOT.parent / "shared" / "corpus")


@pytest.fixture(scope="session")
def corpus() -> Path:
    path = corpus_path()
    if not path.is_dir():
        message = f"mail corpus not found at {path} (set SWITCHBOARD_CORPUS)"
        if IN_CI:
            pytest.fail(message + "; CI=true needs it", pytrace=False)
        pytest.skip(message)
    return path
