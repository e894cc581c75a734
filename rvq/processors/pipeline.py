"""Processor pipelines: the steps a policy runs around its model, as openpi's input / output transforms and
LeRobot's processors do. A step is a small object with `__call__` and `config()`; a `Pipeline` runs its steps in
order and is declared in a bundle's manifest as a list of `{"type": <name>, **config}`, from which
`Pipeline.from_config` rebuilds it (an unknown type or setting is refused).

Steps that need state the manifest does not hold (the action statistics of `Unnormalize` live in the tokenizer
part) are bound to it after they are built (`Pipeline.replace` of their `bound` fields).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

STEP_TYPES: dict[str, type] = {}


class Step(Protocol):
    type_name: str

    def __call__(self, value: Any) -> Any: ...

    def config(self) -> dict[str, Any]: ...


def register_step(name: str):
    """Class decorator: the step is declared in manifests as `{"type": name, ...}`."""

    def register(cls: type) -> type:
        if name in STEP_TYPES:
            raise ValueError(f"processor step type {name!r} is registered twice")
        cls.type_name = name
        STEP_TYPES[name] = cls
        return cls

    return register


def step_config(step: Any) -> dict[str, Any]:
    """A dataclass step's settings as JSON values (tuples as lists); fields marked `bound` (state such as action
    statistics, not settings) are left out."""
    return {f.name: list(v) if isinstance(v := getattr(step, f.name), tuple) else v
            for f in dataclasses.fields(step) if not f.metadata.get("bound")}


class DataclassStep:
    """Base of the steps that are dataclasses: their declaration is their fields (`step_config`)."""

    def config(self) -> dict[str, Any]:
        return step_config(self)


class Pipeline:
    """Steps run in order: `pipeline(value)` is `steps[-1](...steps[0](value))`; an empty pipeline returns its input."""

    def __init__(self, steps: Sequence[Step] = ()) -> None:
        for step in steps:
            if getattr(step, "type_name", None) not in STEP_TYPES:
                raise TypeError(f"{type(step).__name__} is not a registered processor step (rvq.processors)")
        self.steps = tuple(steps)

    def __call__(self, value: Any) -> Any:
        for step in self.steps:
            value = step(value)
        return value

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.to_config() == other.to_config()

    def __repr__(self) -> str:
        return f"Pipeline({self.to_config()})"

    def to_config(self) -> list[dict[str, Any]]:
        """The declaration a manifest stores: `[{"type": name, **settings}, ...]`."""
        return [{"type": step.type_name, **step.config()} for step in self.steps]

    @classmethod
    def from_config(cls, entries: Any, where: str = "processors") -> "Pipeline":
        """Rebuild a pipeline from its declaration; `where` names it in errors."""
        if not isinstance(entries, list):
            raise ValueError(f"{where}: a pipeline is a list of steps, got {type(entries).__name__}")
        steps = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or entry.get("type") not in STEP_TYPES:
                found = entry.get("type") if isinstance(entry, dict) else entry
                raise ValueError(f"{where}: step {i} has unknown type {found!r}; known: {sorted(STEP_TYPES)}")
            step_cls = STEP_TYPES[entry["type"]]
            settings = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items() if k != "type"}
            known = {f.name for f in dataclasses.fields(step_cls) if not f.metadata.get("bound")}
            unknown = sorted(set(settings) - known)
            if unknown:
                raise ValueError(f"{where}: step {i} ({entry['type']}) has unknown settings {unknown}; known: "
                                 f"{sorted(known)}")
            steps.append(step_cls(**settings))
        return cls(steps)

    def find(self, step_type: type) -> list[Any]:
        """The steps of one class, in order."""
        return [step for step in self.steps if isinstance(step, step_type)]

    def replace(self, step_type: type, **changes: Any) -> "Pipeline":
        """A copy with every step of `step_type` changed (`dataclasses.replace`); the others are kept."""
        return Pipeline([dataclasses.replace(s, **changes) if isinstance(s, step_type) else s for s in self.steps])
