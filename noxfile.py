"""Sessions: `unit`, `mock_integration` (the README's test command runs both), `gpu`, `benchmark`, `demo` (the
README's main job: `rvq pipeline`), `tokenizer` (the tokenizer-only job), `lerobot` (rvq's LeRobot datasets checked with
LeRobot's own code, in LeRobot's own environment).

torch is installed first, pinned by RVQ_TORCH_SPEC (default `torch==2.13.0`): on machines whose pip
has a local CPU wheel of that version it is taken from there; elsewhere pip fetches the same version
from the index. Set RVQ_TORCH_SPEC to any requirement (e.g. `torch`) to change it.

`unit`, `mock_integration`, `gpu` and `demo` need the same packages, so they share one virtual environment,
`.nox/shared` (torch and the rest installed once: one ~3 GB environment instead of one per session): nox has no shared
environments of its own (wntrblm/nox#167), so these sessions run without one of nox's and call the shared
environment's programs. It is reinstalled when pyproject.toml, the extras or RVQ_TORCH_SPEC change. The other
sessions use nox's environments, with uv as the backend where it is installed (pip otherwise).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import nox

nox.options.sessions = ["unit", "mock_integration"]
nox.options.reuse_existing_virtualenvs = True

TORCH_SPEC = os.environ.get("RVQ_TORCH_SPEC", "torch==2.13.0")


BACKEND = "uv|virtualenv"  # nox's own sessions: uv where installed, else virtualenv with pip
SHARED = Path(".nox") / "shared"
SHARED_EXTRAS = "data,test,libero,ray"


def install(session: nox.Session, extras: str) -> None:
    session.install(TORCH_SPEC)
    session.install("-e", f".[{extras}]")


def shared_env(session: nox.Session) -> dict[str, str]:
    """The shared environment (created and installed once; see the module docstring), with LIBERO installed and
    configured; returns the environment variables its commands run with."""
    python = SHARED / "bin" / "python"
    wanted = {"torch": TORCH_SPEC, "extras": SHARED_EXTRAS,
              "pyproject": hashlib.sha256(Path("pyproject.toml").read_bytes()).hexdigest()}
    stamp = SHARED / "rvq-install.json"
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(SHARED), external=True)
    if not stamp.exists() or json.loads(stamp.read_text()) != wanted:
        session.run(str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip", external=True)
        session.run(str(python), "-m", "pip", "install", TORCH_SPEC, external=True)
        session.run(str(python), "-m", "pip", "install", "-e", f".[{SHARED_EXTRAS}]", external=True)
        stamp.write_text(json.dumps(wanted))
    else:
        session.log(f"reusing {SHARED} (installed for {wanted['extras']}, {wanted['torch']})")
    bin_dir = str((SHARED / "bin").resolve())
    config_dir = str((SHARED / "libero-config").resolve())
    env = {"PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "VIRTUAL_ENV": str(SHARED.resolve())}
    session.run(f"{bin_dir}/rvq", "setup-libero", "--install", "--config-dir", config_dir, env=env, external=True)
    return {**env, "LIBERO_CONFIG_PATH": config_dir, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
            "RVQ_REQUIRE_LIBERO": "1"}


def run_shared(session: nox.Session, program: str, *args: str, env: dict[str, str]) -> None:
    session.run(str((SHARED / "bin" / program).resolve()), *args, env=env, external=True)


@nox.session(venv_backend="none")
def unit(session: nox.Session) -> None:
    """CPU unit and property tests (minutes)."""
    env = shared_env(session)
    run_shared(session, "pytest", "tests/unit", *session.posargs, env=env)


@nox.session(venv_backend="none")
def mock_integration(session: nox.Session) -> None:
    """CPU integration tests: mock checkpoints, small real data, and short episodes in the real LIBERO
    simulator (installed and configured here)."""
    env = shared_env(session)
    run_shared(session, "pytest", "tests/integration", *session.posargs, env=env)


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """GPU suite: `pytest -m gpu` (skipped with a reason when no CUDA device is present)."""
    env = shared_env(session)
    run_shared(session, "pytest", "-m", "gpu", "tests/gpu", *session.posargs, env=env)


@nox.session(venv_backend=BACKEND)
def benchmark(session: nox.Session) -> None:
    """Speed benchmarks, measured side by side in one run and printed as ratios."""
    install(session, "data,test,bench")
    session.run("pytest", "benchmarks", "-m", "benchmark", "--benchmark-only", "-s", *session.posargs)


@nox.session(venv_backend="none")
def demo(session: nox.Session) -> None:
    """The main job on the embedded default: `rvq pipeline` on three libero_object tasks in the real simulator
    (physics only): scripted demos → robust tokenizer → state-feature heads → learned RSD and main-only policies
    evaluated next to the expert. Arguments go to `rvq pipeline` (e.g. `-- --config FILE.toml`)."""
    env = shared_env(session)
    run_shared(session, "rvq", "pipeline", *(session.posargs or ["--out-dir", "runs/pipeline"]), env=env)


@nox.session(venv_backend=BACKEND)
def tokenizer(session: nox.Session) -> None:
    """The tokenizer-only job: train the robust tokenizer on robosuite's bundled real demos (no simulator)."""
    install(session, "data")
    session.run("rvq", "train-tokenizer", *session.posargs)


# LeRobot 0.4.4 is the newest release that installs on Python 3.11 (0.6 needs 3.12); it pins torch < 2.11, so it gets
# its own environment with the torch it wants (a CUDA build from PyPI on x86_64: several GB, once).
LEROBOT_SPEC = ["lerobot==0.4.4", "torch==2.9.1", "torchvision==0.24.1"]


@nox.session(venv_backend=BACKEND)
def lerobot(session: nox.Session) -> None:
    """LeRobot's own tools on what rvq writes, and rvq on what LeRobot writes (issue 49): `rvq collect-demos --format
    lerobot` on libero_object task 0 (2 demos, layouts v3.0 and v2.1), then in LeRobot's environment
    tests/lerobot/test_lerobot_reads_rvq.py (every frame, stats against LeRobot's computation, the v2.1 → v3.0
    converter, two steps of lerobot-train, datasets made by LeRobotDataset.create), then in rvq's environment
    tests/lerobot/test_rvq_reads_lerobot.py. Not part of the README's test command (a GB-sized install)."""
    env = shared_env(session)
    work = Path("runs/lerobot-check").resolve()
    shutil.rmtree(work, ignore_errors=True)
    collect = ["collect-demos", "--suite", "libero_object", "--tasks", "0", "--trials", "2", "--format", "lerobot"]
    run_shared(session, "rvq", *collect, "--out-dir", str(work / "demos"), env=env)
    (work / "demos_v21").mkdir()
    for path in (work / "demos").iterdir():  # the same demos: collection resumes from them, then writes v2.1
        if path.is_file():
            shutil.copy(path, work / "demos_v21" / path.name)
    run_shared(session, "rvq", *collect, "--lerobot-version", "v2.1", "--out-dir", str(work / "demos_v21"), env=env)
    session.install(*LEROBOT_SPEC, "h5py", "pytest", "hypothesis")
    session.run("pytest", "tests/lerobot/test_lerobot_reads_rvq.py", *session.posargs,
                env={"RVQ_LEROBOT_CHECK": str(work), "HF_HUB_OFFLINE": "1"})
    run_shared(session, "pytest", "tests/lerobot/test_rvq_reads_lerobot.py",
               env={**env, "RVQ_LEROBOT_CHECK": str(work)})
