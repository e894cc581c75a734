"""Sessions: `unit`, `mock_integration` (the README's test command runs both), `gpu`, `benchmark`, `demo`.

torch is installed first, pinned by RVQ_TORCH_SPEC (default `torch==2.13.0`): on machines whose pip
has a local CPU wheel of that version it is taken from there; elsewhere pip fetches the same version
from the index. Set RVQ_TORCH_SPEC to any requirement (e.g. `torch`) to change it.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["unit", "mock_integration"]
nox.options.reuse_existing_virtualenvs = True

TORCH_SPEC = os.environ.get("RVQ_TORCH_SPEC", "torch==2.13.0")


def install(session: nox.Session, extras: str) -> None:
    session.install(TORCH_SPEC)
    session.install("-e", f".[{extras}]")


@nox.session
def unit(session: nox.Session) -> None:
    """CPU unit and property tests (minutes)."""
    install(session, "data,test")
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session
def mock_integration(session: nox.Session) -> None:
    """CPU integration tests with mock checkpoints and small real data."""
    install(session, "data,test")
    session.run("pytest", "tests/integration", *session.posargs)


@nox.session
def gpu(session: nox.Session) -> None:
    """GPU suite: `pytest -m gpu` (skipped with a reason when no CUDA device is present)."""
    install(session, "data,test")
    session.run("pytest", "-m", "gpu", "tests/gpu", *session.posargs)


@nox.session
def benchmark(session: nox.Session) -> None:
    """Speed benchmarks, measured side by side in one run and printed as ratios."""
    install(session, "data,test,bench")
    session.run("pytest", "benchmarks", "-m", "benchmark", "--benchmark-only", "-s", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job on the embedded default: train the robust tokenizer on robosuite's real demos."""
    install(session, "data")
    session.run("rvq", "train-tokenizer", *session.posargs)
