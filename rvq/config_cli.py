"""A command's options are its config dataclass, parsed by a library (tyro), seeded from a `--config` file.

Why tyro: it reads the dataclasses the jobs already take and spells flags as rvq always has (`--hidden-dim`,
`--no-linear-skip`, lists as `--demos a b`), so every command in the README and docs/RESULTS.md still runs; `--help`
shows each default with the field's comment; nested dataclasses become dotted flags. draccus (LeRobot's choice) and
jsonargparse load config files themselves, but spell flags `--hidden_dim` and booleans `--linear_skip false`, which
would break every recorded command. tyro has no file loader, so `--config FILE` is read here: a TOML file (as the
pipeline's configs) or a JSON one (such as a run's own `run_config.json`) of the dataclass's fields, whose values
stand as the defaults that flags then override. Unknown keys are refused, never dropped.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, published as tomli before it joined the standard library
    import tomli as tomllib

T = TypeVar("T")
RUN_CONFIG = "run_config.json"  # in a run's output folder: its resolved config, a valid `--config` file


def split_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    """`--config FILE` / `--config=FILE` out of `argv` → (FILE or None, the other arguments)."""
    path, rest, args = None, [], iter(argv)
    for arg in args:
        if arg == "--config" or arg.startswith("--config="):
            if path is not None:
                raise ValueError("--config is given twice; merge the files into one")
            path = arg.split("=", 1)[1] if "=" in arg else next(args, None)
            if not path:
                raise ValueError("--config needs a file (TOML or JSON)")
        else:
            rest.append(arg)
    return path, rest


def read_config_file(path: str | Path, cls: type) -> dict[str, Any]:
    """A TOML or JSON file of `cls`'s fields → a dict; refuses unknown keys, naming them and the known ones."""
    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"--config {path}: not a readable TOML or JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a table of settings, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"--config {path}: unknown setting(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
    return data


def parse_config(cls: type[T], argv: list[str], prog: str, fixed: dict[str, Any] | None = None,
                 defaults: dict[str, Any] | None = None) -> T:
    """Parse `argv` into a `cls` instance: the dataclass's defaults (`defaults`: the command's own for some fields),
    then the `--config` file, then the flags. `fixed`: fields the command itself sets (not flags; a config file may
    not set them to something else)."""
    import tyro

    path, rest = split_config_flag(argv)
    values = {**(defaults or {}), **(read_config_file(path, cls) if path else {})}
    for name, value in (fixed or {}).items():
        if name in values and values[name] != value:
            raise ValueError(f"--config {path}: {name} is {values[name]!r} there, but `{prog}` sets {value!r}")
        values[name] = value
    return tyro.cli(cls, args=rest, prog=prog, default=cls(**values), description=cls.__doc__)


def save_run_config(cfg: Any, out_dir: str | Path) -> Path:
    """Write `cfg` (a dataclass) as `<out_dir>/run_config.json`: what the run was given, every field resolved."""
    path = Path(out_dir) / RUN_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True))
    return path
