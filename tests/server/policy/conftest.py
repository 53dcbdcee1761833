"""Fixtures of the policy tests; builders live in `policykit.py`."""

from __future__ import annotations

import pytest

from server.load import LoadBoard


@pytest.fixture
def board() -> LoadBoard:
    return LoadBoard()
