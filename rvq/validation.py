"""Input checks shared by the package: every failure is a `ValueError` that names the problem."""

from __future__ import annotations

from typing import Sequence

import torch

# NumPy dtype kinds of real numbers (floats, signed and unsigned integers) and of integers alone. Bool, complex,
# byte strings and objects are refused wherever numbers are read, never cast.
REAL_DTYPE_KINDS = "fiu"
INTEGER_DTYPE_KINDS = "iu"


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise if `x` holds NaN or infinity, saying how many and where the first one is."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0].tolist())
        kinds = []
        if bool(torch.isnan(x).any()):
            kinds.append("NaN")
        if bool(torch.isinf(x).any()):
            kinds.append("inf")
        raise ValueError(
            f"{name} contains {'/'.join(kinds)}: {int(bad.sum())} non-finite value(s), first at index {first}"
        )


def check_shape(x: torch.Tensor, name: str, expected: Sequence[int | None]) -> None:
    """Raise unless `x` has `len(expected)` dims and matches every non-None size.

    `expected` names sizes per dim, e.g. `(None, None, 7)` for `[B, C, 7]`.
    """
    if x.dim() != len(expected):
        want = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
        raise ValueError(f"{name} must have rank {len(expected)} {want}, got shape {list(x.shape)}")
    for axis, (got, want) in enumerate(zip(x.shape, expected)):
        if want is not None and got != want:
            raise ValueError(f"{name} has size {got} at dim {axis}, expected {want} (shape {list(x.shape)})")


def check_float(x: torch.Tensor, name: str) -> None:
    """Raise unless `x` is a floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
