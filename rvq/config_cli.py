"""A command's options are its config dataclass, parsed by a library (tyro), seeded from a `--config` file.

Why tyro: it reads the dataclasses the jobs already take and spells flags the shell way (`--model.hidden-dim`,
`--model.no-linear-skip`, lists as `--demos a b`); `--help` shows each default with the field's comment; nested
dataclasses become dotted flags. draccus (LeRobot's choice) and jsonargparse load config files themselves, but spell
booleans `--linear_skip false`. tyro has no file loader, so `--config FILE` is read here: a TOML file (as the
pipeline's configs) or a JSON one (such as a run's own `run_config.json`) of the dataclass's fields, whose values
stand as the defaults that flags then override. Unknown keys are refused, never dropped.

One spelling: nested configs (a training run's `model` and `optim` groups) are dotted flags (`--optim.lr 1e-3`) and
TOML tables (`[optim]`), nothing else. In Python, `config_from(cls, lr=1e-3, ...)` builds a config and
`updated(cfg, ...)` a changed copy; their keywords may also name a leaf that only one field has (`lr` for `optim.lr`),
as a keyword argument cannot hold a dot.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
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


def _is_group(field_type: Any) -> bool:
    return isinstance(field_type, type) and dataclasses.is_dataclass(field_type)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=False)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _leaves(cls: type) -> list[tuple[str, tuple[str, ...]]]:
    """Every leaf field as (name, path through the nested groups)."""
    out = []
    for name, field_type in _field_types(cls).items():
        out += [(leaf, (name, *path)) for leaf, path in _leaves(field_type)] if _is_group(field_type) \
            else [(name, (name,))]
    return out


def ambiguous_leaves(cls: type) -> dict[str, list[str]]:
    """Leaf names that more than one group uses → their dotted paths (these have no flat spelling)."""
    paths: dict[str, list[str]] = {}
    for leaf, path in _leaves(cls):
        paths.setdefault(leaf, []).append(".".join(path))
    return {leaf: found for leaf, found in paths.items() if len(found) > 1}


def leaf_paths(cls: type) -> dict[str, tuple[str, ...]]:
    """Each leaf name that only one field has → that field's path through the nested groups
    (`{"lr": ("optim", "lr"), "seed": ("seed",)}`): the keywords `config_from` and `updated` take."""
    ambiguous = ambiguous_leaves(cls)
    return {leaf: path for leaf, path in _leaves(cls) if leaf not in ambiguous}


def nest(cls: type, values: dict[str, Any], where: str = "", by_leaf: bool = False) -> dict[str, Any]:
    """Nested values (groups as dicts or config objects) → nested values of `cls`, unknown keys refused. `by_leaf`
    (Python keywords only): a key may also be a leaf name that only one field has."""
    groups = {name for name, t in _field_types(cls).items() if _is_group(t)}
    top = set(_field_types(cls)) - groups
    paths = leaf_paths(cls) if by_leaf else {name: (name,) for name in top}
    ambiguous, nested = ambiguous_leaves(cls) if by_leaf else {}, {}
    for key, value in values.items():
        if key in groups and dataclasses.is_dataclass(value):  # a whole group given as its config object
            nested[key] = value
        elif key in groups and isinstance(value, dict):
            nested.setdefault(key, {}).update(nest(_field_types(cls)[key], value, f"{where}{key}.", by_leaf))
        elif key in paths:
            *head, leaf = paths[key]
            target = nested
            for group in head:
                target = target.setdefault(group, {})
            target[leaf] = value
        elif key in groups:
            raise ValueError(f"{where + key}: expected a table of settings (a group), got {value!r}")
        elif key in ambiguous:
            raise ValueError(f"setting {where + key!r} of {cls.__name__} is ambiguous: give it as one of "
                             f"{[where + path for path in ambiguous[key]]}")
        else:
            raise ValueError(f"unknown setting(s) {[where + key]} for {cls.__name__}; known: "
                             f"{sorted({*paths, *groups})}")
    return nested


def build(cls: type[T], values: dict[str, Any], base: T | None = None, where: str = "") -> T:
    """A `cls` from nested values, each group starting from `base`'s (default: the class's defaults), so a group's
    own defaults in `cls` (the tokenizer's learning rate, not the heads') are kept where a value is not given. Every
    value is checked against its field's type (`check_value`), naming the field."""
    return _build(cls, checked(cls, values, where), base)


def _build(cls: type[T], values: dict[str, Any], base: T | None) -> T:
    """`build` of values already checked (the groups' too: `checked` went through them)."""
    if base is None:  # the class's defaults; fields without one (a command's inputs) must be among `values`
        base = cls(**{name: values[name] for name in required_fields(cls) if name in values})
    changes = {}
    for name, value in values.items():
        group = getattr(base, name)
        nested = dataclasses.is_dataclass(group) and isinstance(value, dict)
        changes[name] = _build(type(group), value, group) if nested else value
    return dataclasses.replace(base, **changes)


def checked(cls: type, values: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Nested values of `cls` with every leaf checked against its field's type (`check_value`); a group given as its
    config object is its own (its `__post_init__` checked it)."""
    hints, out = _field_types(cls), {}
    for name, value in values.items():
        if _is_group(hints[name]) and isinstance(value, dict):
            out[name] = checked(hints[name], value, f"{where}{name}.")
        elif _is_group(hints[name]) and dataclasses.is_dataclass(value):
            out[name] = value
        else:
            out[name] = check_value(f"{where}{name}", value, hints[name])
    return out


def check_value(name: str, value: Any, hint: Any) -> Any:
    """`value` as field `name` of type `hint` holds it, or a ValueError naming the field: a bool is not a number, a
    float is not an int, NaN / inf are not numbers a setting means, a list's items and a tuple's length are checked.
    An int given for a float field becomes that float (so `lr = 1` and `lr = 1.0` are one setting)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return check_value(name, value, args[0])
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return check_value(name, value, option)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if len(errors) == 1 else f"{name}: expected {_type_name(hint)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{name}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}: expected a list ({_type_name(hint)}), got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"{name}: expected {len(args)} values ({_type_name(hint)}), got {value!r}")
            return tuple(check_value(f"{name}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [check_value(f"{name}[{i}]", v, item) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: expected a whole number, got {value!r}")
        if not -2 ** 63 <= value < 2 ** 63:  # what torch and numpy take (a larger one fails deep inside them)
            raise ValueError(f"{name}: expected a whole number of 64 bits, got {value!r}")
        if name.rsplit(".", 1)[-1] == "seed" and value < 0:  # numpy's generators refuse negative seeds
            raise ValueError(f"{name}: a seed must be >= 0, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{name}: expected a string, got {value!r}")
        return value
    return value  # a type this check does not know: the config's own __post_init__ checks it


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "")



def config_from(cls: type[T], **values: Any) -> T:
    """`cls` from keyword values, groups as dicts or by a leaf name only one field has:
    `config_from(TrainHeadConfig, optim={"lr": 1e-3}, width=64)`."""
    return build(cls, nest(cls, values, by_leaf=True))


def updated(cfg: T, **values: Any) -> T:
    """A copy of `cfg` with keyword values changed, as `config_from` takes them (`dataclasses.replace` for nested
    configs): `updated(cfg, heads={"steps": 5})`."""
    return build(type(cfg), nest(type(cfg), values, by_leaf=True), cfg)


def _optional_bool_paths(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The paths of `cls`'s leaves typed `bool | None` (unset: a default that depends on other settings)."""
    out = []
    for name, field_type in _field_types(cls).items():
        if _is_group(field_type):
            out += _optional_bool_paths(field_type, (*prefix, name))
        elif set(typing.get_args(field_type)) == {bool, type(None)}:
            out.append((*prefix, name))
    return out


def optional_bool_flags(argv: list[str], cls: type) -> list[str]:
    """`--cascade` / `--no-cascade` (dotted too) for a `bool | None` field → `--model.cascade True` / `False`.

    Why: tyro spells such a field `--model.cascade {None,True,False}` (a value is required), while a boolean is a
    flag pair everywhere else in rvq's commands; this keeps one spelling for both."""
    flags = {}
    for path in _optional_bool_paths(cls):
        dotted = ".".join(path).replace("_", "-")
        groups, leaf = ".".join(path[:-1]).replace("_", "-"), path[-1].replace("_", "-")
        flags[f"--{dotted}"] = [f"--{dotted}", "True"]
        flags[f"--{groups + '.' if groups else ''}no-{leaf}"] = [f"--{dotted}", "False"]
    out = []
    for i, arg in enumerate(argv):
        # tyro's own spelling, `--model.cascade True`, passes as it is
        valued = (arg in flags and flags[arg][0] == arg and i + 1 < len(argv)
                  and argv[i + 1] in ("True", "False", "None"))
        out += flags[arg] if arg in flags and not valued else [arg]
    return out


def read_config_file(path: str | Path, cls: type) -> dict[str, Any]:
    """A TOML or JSON file of `cls`'s fields (groups as tables) → nested values; refuses unknown keys, naming them
    and the known ones."""
    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"--config {path}: not a readable TOML or JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a table of settings, got {type(data).__name__}")
    try:
        return checked(cls, nest(cls, data))
    except ValueError as exc:
        raise ValueError(f"--config {path}: {exc}") from exc


def parse_config(cls: type[T], argv: list[str], prog: str, fixed: dict[str, Any] | None = None,
                 defaults: dict[str, Any] | None = None) -> T:
    """Parse `argv` into a `cls` instance: the dataclass's defaults (`defaults`: the command's own for some fields),
    then the `--config` file, then the flags. `fixed`: fields the command itself sets (not flags; a config file may
    not set them to something else)."""
    import tyro

    path, rest = split_config_flag(argv)
    from_file = read_config_file(path, cls) if path else {}
    for name, value in (fixed or {}).items():
        if name in from_file and from_file[name] != value:
            raise ValueError(f"--config {path}: {name} is {from_file[name]!r} there, but `{prog}` sets {value!r}")
    given = nest(cls, {**(defaults or {}), **(fixed or {})})
    # a field without a default (an input the command cannot guess) stays a required flag unless the file gives it
    required = {name: from_file.get(name, given.get(name, tyro.MISSING)) for name in required_fields(cls)}
    values = build(cls, from_file, build(cls, given, cls(**required)))
    args = optional_bool_flags(rest, cls)
    return tyro.cli(cls, args=args, prog=prog, default=values, description=cls.__doc__)


def required_fields(cls: type) -> list[str]:
    """The top-level fields of `cls` without a default: a command's inputs, required flags."""
    return [f.name for f in dataclasses.fields(cls) if f.init and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING]


def save_run_config(cfg: Any, out_dir: str | Path) -> Path:
    """Write `cfg` (a dataclass) as `<out_dir>/run_config.json`: what the run was given, every field resolved."""
    path = Path(out_dir) / RUN_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True))
    return path
