"""Shared fixtures of the test suite: seeded randomness and the ngspice skip.

Every random draw in the suite is seeded: numpy through the ``rng`` fixture (or an explicit
``np.random.default_rng(seed)``), hypothesis through the derandomized ``imac`` profile below.

Tests that need ngspice carry ``@pytest.mark.spice`` (registered in pyproject.toml); the hook
below skips them, with the install hint as the reason, when ngspice cannot be found.  Deselect
them with ``-m "not spice"``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from imac.ngspice import ngspice_available

# Hypothesis: deterministic (derandomize), no example database, no per-example deadline (the
# first sparse factorisation in a process can be slow).
settings.register_profile(
    "imac",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("imac")

NGSPICE_SKIP_REASON = (
    "ngspice not found (neither IMAC_NGSPICE nor PATH); install it with "
    "`apt-get install -y ngspice` to run the SPICE reference tests"
)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip ``spice``-marked tests with a clear reason when ngspice is absent."""
    if item.get_closest_marker("spice") is not None and not ngspice_available():
        pytest.skip(NGSPICE_SKIP_REASON)


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded numpy generator per test."""
    return np.random.default_rng(20240611)


@pytest.fixture(scope="session")
def requires_ngspice() -> None:
    """Fixture form of the skip, for (module- or session-scoped) fixtures that run ngspice."""
    if not ngspice_available():
        pytest.skip(NGSPICE_SKIP_REASON)


@pytest.fixture(scope="session")
def mnist_available() -> bool:
    """Skip (with where it looked) when the real MNIST test set cannot be loaded."""
    from imac.errors import DataError
    from imac.nn.data import load_mnist

    try:
        load_mnist("test")
    except DataError:
        pytest.skip("MNIST not found (../shared/data or IMAC_DATA_DIR)")
    return True
