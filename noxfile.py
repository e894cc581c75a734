"""Sessions: `unit`, `mock_integration` (the README's test command runs both), `gpu`, `benchmark`, `demo` (the
README's main job: `rvq pipeline`), `tokenizer` (the tokenizer-only job).

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


def install_libero(session: nox.Session) -> dict[str, str]:
    """The `libero` and `ray` extras, LIBERO itself without its training-only dependencies, and its config;
    returns the environment the simulator needs (config path, EGL rendering)."""
    install(session, "data,test,libero,ray")
    config_dir = os.path.join(session.virtualenv.location, "libero-config")
    session.run("rvq", "setup-libero", "--install", "--config-dir", config_dir)
    return {"LIBERO_CONFIG_PATH": config_dir, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
            "RVQ_REQUIRE_LIBERO": "1"}


@nox.session
def unit(session: nox.Session) -> None:
    """CPU unit and property tests (minutes)."""
    install(session, "data,test")
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session
def mock_integration(session: nox.Session) -> None:
    """CPU integration tests: mock checkpoints, small real data, and short episodes in the real LIBERO
    simulator (installed and configured here)."""
    env = install_libero(session)
    session.run("pytest", "tests/integration", *session.posargs, env=env)


@nox.session
def gpu(session: nox.Session) -> None:
    """GPU suite: `pytest -m gpu` (skipped with a reason when no CUDA device is present)."""
    env = install_libero(session)
    session.run("pytest", "-m", "gpu", "tests/gpu", *session.posargs, env=env)


@nox.session
def benchmark(session: nox.Session) -> None:
    """Speed benchmarks, measured side by side in one run and printed as ratios."""
    install(session, "data,test,bench")
    session.run("pytest", "benchmarks", "-m", "benchmark", "--benchmark-only", "-s", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job on the embedded default: `rvq pipeline` on three libero_object tasks in the real simulator
    (physics only): scripted demos → robust tokenizer → state-feature heads → learned RSD and main-only policies
    evaluated next to the expert. Arguments go to `rvq pipeline` (e.g. `-- --config FILE.toml`)."""
    env = install_libero(session)
    session.run("rvq", "pipeline", *(session.posargs or ["--out", "runs/pipeline"]), env=env)


@nox.session
def tokenizer(session: nox.Session) -> None:
    """The tokenizer-only job: train the robust tokenizer on robosuite's bundled real demos (no simulator)."""
    install(session, "data")
    session.run("rvq", "train-tokenizer", *session.posargs)
