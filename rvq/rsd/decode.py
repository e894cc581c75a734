"""Decoding the main model over the RFSQ layers: greedy, speculative (RSD) and early exit.

Every decoder runs the main model incrementally (`MainModel.extend` over a `LayerCache`): a pass computes only the
layers it adds, and a layer's logits are the same bits whichever decoder computes them, so the decoders agree
exactly on the layers they share.

Greedy: `L` passes of one layer, layer `l`'s argmax conditioned on the decoded layers `< l` (the lossless reference).

Speculative: the draft proposes layers `0..k-1` in one pass; one main pass of `k + 1` layers teacher-forced on the
proposal gives the main model's own choice for layers `0..k`; the longest prefix of layers equal to that choice is
accepted, the next layer is taken from the same pass, and the remaining layers are decoded one pass each. With `a`
layers accepted (the batch's fewest) the main model runs `L - a` passes instead of `L`. Exact mode returns exactly
the greedy tokens for any draft. Relaxed mode (lossy) accepts a layer when at least `tau` of its positions agree, or
when all positions are within `max_grid_distance` grid steps of the main model's choice.

Early exit: greedy passes one layer at a time, stopping once a `DepthRule` says the layers decoded so far are
enough for every chunk of the batch (`rvq.rsd.early_exit`: a certified bound on what the remaining layers could
change in the executed action, or a fixed depth). The layers it returns are exactly greedy's first layers.
"""

from __future__ import annotations

import numbers
import time
from typing import Protocol

import torch

from rvq.models.checkpoint import check_pair
from rvq.models.draft import DraftModel
from rvq.models.layer_cache import LayerCache
from rvq.models.main import MainModel
from rvq.rsd.stats import ExitStats, RSDStats


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_features(model: torch.nn.Module, features: torch.Tensor, name: str) -> None:
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        shape = list(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features must be [B, D], got {shape}")
    if not features.is_floating_point():
        raise ValueError(f"features must be floating point, got dtype {features.dtype}")
    if features.shape[1] != model.feature_dim:
        raise ValueError(f"features have {features.shape[1]} dims, the {name} model reads {model.feature_dim}")
    if features.shape[0] == 0:
        raise ValueError("features hold an empty batch")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN/inf")


def _check_main(main: object) -> None:
    """A main head: a `MainModel` or a module with its incremental passes (`start_cache`, `extend`)."""
    if not (isinstance(main, MainModel) or (hasattr(main, "start_cache") and hasattr(main, "extend"))):
        raise ValueError(f"main must be a main head (MainModel), got {type(main).__name__}")


def _start(main: MainModel, features: torch.Tensor) -> tuple[LayerCache, torch.Tensor]:
    """The decode's cache and empty codes `[B, P, L]` (unknown layers hold code 0)."""
    param = next(main.parameters())
    features = features.to(param.device, param.dtype)
    cache = main.start_cache(main.encode_features(features))
    tokens = main.config.tokens
    codes = torch.zeros(features.shape[0], tokens.positions, tokens.num_layers, dtype=torch.long, device=param.device)
    return cache, codes


@torch.inference_mode()
def greedy_decode(main: MainModel, features: torch.Tensor) -> torch.Tensor:
    """Main-only greedy decoding: features `[B, D]` → codes `[B, C, H, L]` (L one-layer passes)."""
    _check_main(main)
    _check_features(main, features, "main")
    cache, codes = _start(main, features)
    for layer in range(main.num_layers):
        codes[..., layer] = main.extend(cache, codes)[:, 0].argmax(-1)
    return main.config.tokens.positions_to_chunk(codes)


def _accepted_prefix(matches: torch.Tensor) -> torch.Tensor:
    """matches `[B, k]` bool → length of the all-true prefix per row `[B]`."""
    return matches.long().cumprod(dim=1).sum(dim=1)


DEFAULT_TAU = 0.7  # relaxed mode: accept a draft layer when this fraction of its tokens agree with main's


@torch.inference_mode()
def speculative_decode(
    draft: DraftModel,
    main: MainModel,
    features: torch.Tensor,
    exact: bool = True,
    num_draft_layers: int | None = None,
    tau: float = DEFAULT_TAU,
    max_grid_distance: int | None = None,
) -> tuple[torch.Tensor, RSDStats]:
    """features `[B, D]` → `(codes [B, C, H, L], stats)`. Exact mode equals `greedy_decode(main, features)`.

    num_draft_layers: k, the layers the draft proposes (default: all it predicts).
    tau, max_grid_distance: relaxed mode's acceptance rules (refused when `exact`).
    """
    if not isinstance(draft, torch.nn.Module) or hasattr(draft, "extend"):
        raise ValueError(f"speculative_decode(draft, main, features): the first argument is a "
                         f"{type(draft).__name__}, not a draft head; pass the draft first")
    _check_main(main)
    check_pair(draft, main)
    _check_features(main, features, "main")
    tokens = main.config.tokens
    limit = min(draft.num_draft_layers, tokens.num_layers)
    if num_draft_layers is None:
        k = limit
    elif isinstance(num_draft_layers, bool) or not isinstance(num_draft_layers, numbers.Integral):
        raise ValueError(f"num_draft_layers must be an integer in [1, {limit}], got {num_draft_layers!r}")
    else:
        k = int(num_draft_layers)
    if not 1 <= k <= limit:
        raise ValueError(f"num_draft_layers must be in [1, {limit}], got {k}")
    if not exact:
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        if max_grid_distance is not None and (isinstance(max_grid_distance, bool)
                                              or not isinstance(max_grid_distance, numbers.Integral)
                                              or max_grid_distance < 0):
            raise ValueError(f"max_grid_distance must be a whole number of grid steps >= 0, got {max_grid_distance!r}")
    elif max_grid_distance is not None:
        raise ValueError("max_grid_distance is a relaxed-mode rule: pass exact=False")
    device = next(main.parameters()).device
    num_layers = tokens.num_layers

    _sync(device)
    t0 = time.perf_counter()
    draft_param = next(draft.parameters())
    proposal = tokens.rows_to_positions(draft(features.to(draft_param.device, draft_param.dtype))[:, :k].argmax(-1))
    proposal = proposal.to(device)
    _sync(device)
    t1 = time.perf_counter()

    cache, codes = _start(main, features)
    codes[..., :k] = proposal
    rows = min(k + 1, num_layers)
    choice = tokens.rows_to_positions(main.extend(cache, codes, rows).argmax(-1))  # [B, P, rows]
    same = choice[..., :k] == proposal  # [B, P, k]
    agreement = same.float().mean(dim=1)  # [B, k]
    if exact:
        matches = same.all(dim=1)
    else:
        matches = agreement >= tau
        if max_grid_distance is not None:
            matches |= (choice[..., :k] - proposal).abs().amax(dim=1) <= max_grid_distance
    accepted = _accepted_prefix(matches)  # [B]
    # per sample: its accepted draft layers, then main's choice at layer `accepted` (conditioned on them)
    known = torch.clamp(accepted + 1, max=num_layers)  # layers fixed so far, per sample
    layer_axis = torch.arange(num_layers, device=device)[None, None, :]
    taken = torch.zeros_like(codes)
    taken[..., :rows] = choice
    codes = torch.where(layer_axis < accepted[:, None, None], codes, taken)  # draft where accepted, else main
    codes.masked_fill_(layer_axis >= known[:, None, None], 0)
    # The batch goes on from its fewest fixed layers; the cache's later rows were conditioned on rejected layers.
    start = int(known.min())  # the one host sync of the loop
    cache.truncate(start)
    for layer in range(start, num_layers):
        step = main.extend(cache, codes)[:, 0].argmax(-1)  # [B, P]
        fixed = (layer < known)[:, None]  # a sample keeps the layers it has (exact: the same tokens)
        codes[..., layer] = torch.where(fixed, codes[..., layer], step)
    passes = 1 + num_layers - start
    _sync(device)
    t2 = time.perf_counter()
    stats = RSDStats(
        proposed_layers=k, num_layers=num_layers, accepted=accepted.cpu(), agreement=agreement.cpu(),
        main_passes=passes, draft_ms=(t1 - t0) * 1e3, main_ms=(t2 - t1) * 1e3, total_ms=(t2 - t0) * 1e3, exact=exact,
    )
    return tokens.positions_to_chunk(codes), stats


class DepthRule(Protocol):
    """When early exit may stop: codes `[B, C, H, k]` (greedy's first k layers) → `(done [B] bool, bound [B],
    decoded)`, the bound being what the rule certifies about the rest (NaN where it certifies nothing), `decoded` the
    codes' decode `[B, C, ...]` if the rule made it (kept for the chunks that stop; None: it made none)."""

    def __call__(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]: ...


@torch.inference_mode()
def early_exit_decode(main: MainModel, features: torch.Tensor, rule: DepthRule) -> tuple[torch.Tensor, ExitStats]:
    """features `[B, D]` → `(codes [B, C, H, L], stats)`: greedy one layer per pass until `rule` is done for every
    chunk. Chunk b's first `stats.depth[b]` layers are greedy's (its layers from there on hold code 0 and are not
    part of its decode: decode `codes[b, ..., :depth[b]]`, or take `stats.decoded[b]` where the rule decoded it). A
    chunk's depth is the first at which the rule was done for it; the batch runs until every chunk is done (or all L
    layers), so `main_passes` is the batch's deepest."""
    _check_main(main)
    _check_features(main, features, "main")
    tokens = main.config.tokens
    device = next(main.parameters()).device
    _sync(device)
    t0 = time.perf_counter()
    cache, codes = _start(main, features)
    batch = features.shape[0]
    depth = torch.full((batch,), tokens.num_layers, dtype=torch.long)
    bound = torch.zeros(batch, dtype=torch.float64)
    open_rows = torch.ones(batch, dtype=torch.bool)
    decoded = None
    passes = 0
    for layer in range(tokens.num_layers):
        codes[..., layer] = main.extend(cache, codes)[:, 0].argmax(-1)
        passes += 1
        if layer == tokens.num_layers - 1:
            break  # the full depth: nothing left to bound
        done, certified, made = rule(tokens.positions_to_chunk(codes[..., :layer + 1]))
        done, certified = done.cpu(), certified.cpu().double()
        stop = open_rows & done
        depth[stop] = layer + 1
        bound[stop] = certified[stop]
        if made is not None and bool(stop.any()):
            decoded = torch.zeros_like(made) if decoded is None else decoded
            decoded[stop.to(made.device)] = made[stop.to(made.device)]
        open_rows &= ~done
        if not bool(open_rows.any()):
            break
    later = torch.arange(tokens.num_layers, device=device)[None, None, :] >= depth.to(device)[:, None, None]
    codes.masked_fill_(later, 0)
    _sync(device)
    stats = ExitStats(depth=depth, bound=bound, num_layers=tokens.num_layers, main_passes=passes,
                      total_ms=(time.perf_counter() - t0) * 1e3, decoded=decoded)
    return tokens.positions_to_chunk(codes), stats
