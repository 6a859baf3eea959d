"""Small samples shared by the sample generator's tests (400 contacts × 90 days take about a second)."""

from __future__ import annotations

from pathlib import Path

import pytest
from handoff.sample import generate

from tests.plugins.sample.sample_support import SMALL, all_events


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "a"
    generate(out, seed=7, workers=1, **SMALL)
    return out


@pytest.fixture(scope="session")
def sample_twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same seed again, with two worker processes instead of one."""
    out = tmp_path_factory.mktemp("sample") / "b"
    generate(out, seed=7, workers=2, **SMALL)
    return out


@pytest.fixture(scope="session")
def sample_events(sample: Path) -> list[tuple[str, dict]]:
    """(folder day, event) for every event of ``sample``, read once."""
    return all_events(sample)
