"""The command-line reference (`docs/cli.md`), generated from the commands' config dataclasses: every option with its
default and its description (the field's comment), so the page cannot drift from what `rvq COMMAND --help` shows.

    python -m rvq.cli_reference > docs/cli.md

Descriptions come from tyro's own reading of the field comments (`tyro._docstrings.get_field_docstring`: tyro has no
public call for it; the reference test fails if that ever changes), so `--help` and this page say the same thing.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from typing import Any

from tyro import _docstrings
from tyro.conf import Positional, Suppress

from rvq.cli import COMMANDS, CONFIGS


def config_class(command: str) -> type:
    """The config dataclass of `rvq <command>` (`rvq.cli.CONFIGS`)."""
    module, name = CONFIGS[command].split(":")
    return getattr(importlib.import_module(module), name)


def _markers(hint: Any) -> tuple[Any, ...]:
    return tuple(getattr(hint, "__metadata__", ()))


def _is_group(hint: Any) -> bool:
    plain = typing.get_args(hint)[0] if _markers(hint) else hint
    return isinstance(plain, type) and dataclasses.is_dataclass(plain)


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return repr(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return repr(field.default_factory())
    return "required"


def options(cls: type, prefix: str = "") -> list[dict[str, str]]:
    """Every option of `cls` (nested groups as dotted flags): `{"flag", "default", "description"}`; fields the
    command sets itself (`Suppress`) are left out."""
    hints = typing.get_type_hints(cls, include_extras=True)
    rows = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if not field.init or Suppress in _markers(hint):
            continue
        if _is_group(hint):
            rows += options(hints[field.name], f"{prefix}{field.name}.")
            continue
        name = f"{prefix}{field.name}".replace("_", "-")
        plain = typing.get_args(hint)[0] if _markers(hint) else hint
        if Positional in _markers(hint):
            flag = field.name.upper()
        elif plain is bool or set(typing.get_args(plain)) == {bool, type(None)}:
            head, _, leaf = name.rpartition(".")
            flag = f"--{name}, --{head + '.' if head else ''}no-{leaf}"
        else:
            flag = f"--{name}"
        rows.append({"flag": flag, "default": _default(field),
                     "description": _docstrings.get_field_docstring(cls, field.name, ()) or ""})
    return rows


def reference() -> str:
    """The whole page, markdown."""
    lines = ["# Command-line reference", "",
             "Generated from the config dataclasses by `python -m rvq.cli_reference > docs/cli.md` (a test checks it "
             "is current). Every command also takes `--config FILE.toml` (or a run's `run_config.json`): its values "
             "are the defaults that flags override, groups as TOML tables (`[optim]`). `rvq COMMAND --help` shows "
             "the same options.", ""]
    for command, (_, summary) in COMMANDS.items():
        cls = config_class(command)
        lines += [f"## rvq {command}", "", f"{summary}. Config: `{cls.__module__}.{cls.__name__}`.", "",
                  "| option | default | description |", "|---|---|---|"]
        for row in options(cls):
            description = " ".join(row["description"].split()).replace("|", "\\|")
            lines.append(f"| `{row['flag']}` | `{row['default']}` | {description} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference(), end="")
