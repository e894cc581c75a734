"""Benchmarks run only with `nox -s benchmark` (`-m benchmark --benchmark-only`)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.benchmark)
