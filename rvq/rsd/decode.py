"""Main-only greedy decoding and residual speculative decoding (RSD).

Greedy: `L` main passes, layer `l`'s argmax conditioned on the decoded layers `< l`.

Speculative: the draft proposes layers `0..k-1` in one pass; one main pass teacher-forced on the
proposal gives the main model's own choice for layers `0..k`; the longest prefix of layers equal to
that choice is accepted, the next layer is taken from the same pass, and the remaining layers are
decoded one pass each. With `a` layers accepted the main model runs `L - a` passes instead of `L`.

Exact mode returns exactly the greedy tokens for any draft: every pass has the same shape and the
main model's rows never depend on later rows (see `rvq.models.main`). Relaxed mode (lossy) accepts a
layer when at least `tau` of its positions agree, or when all positions are within
`max_grid_distance` grid steps of the main model's choice.
"""

from __future__ import annotations

import time

import torch

from rvq.models.checkpoint import check_pair
from rvq.models.draft import DraftModel
from rvq.models.main import MainModel
from rvq.rsd.stats import RSDStats


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_features(model: torch.nn.Module, features: torch.Tensor, name: str) -> None:
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        shape = list(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features must be [B, D], got {shape}")
    if features.shape[1] != model.feature_dim:
        raise ValueError(f"features have {features.shape[1]} dims, the {name} model reads {model.feature_dim}")
    if features.shape[0] == 0:
        raise ValueError("features hold an empty batch")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN/inf")


@torch.inference_mode()
def greedy_decode(main: MainModel, features: torch.Tensor) -> torch.Tensor:
    """Main-only greedy decoding: features `[B, D]` → codes `[B, C, H, L]` (L main passes)."""
    _check_features(main, features, "main")
    features = features.to(next(main.parameters()).device, next(main.parameters()).dtype)
    context = main.encode_features(features)
    tokens = main.config.tokens
    codes = torch.zeros(features.shape[0], tokens.positions, tokens.num_layers, dtype=torch.long, device=features.device)
    for layer in range(tokens.num_layers):
        codes[..., layer] = main.logits_from_context(context, codes)[:, layer].argmax(-1)
    return tokens.positions_to_chunk(codes)


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
    tau, max_grid_distance: relaxed mode's acceptance rules (ignored when `exact`).
    """
    check_pair(draft, main)
    _check_features(main, features, "main")
    tokens = main.config.tokens
    k = draft.num_draft_layers if num_draft_layers is None else int(num_draft_layers)
    if not 1 <= k <= min(draft.num_draft_layers, tokens.num_layers):
        raise ValueError(f"num_draft_layers must be in [1, {min(draft.num_draft_layers, tokens.num_layers)}], got {k}")
    if not exact and not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    param = next(main.parameters())
    device = param.device
    features = features.to(device, param.dtype)
    batch, num_layers = features.shape[0], tokens.num_layers
    rows = torch.arange(batch, device=device)

    _sync(device)
    t0 = time.perf_counter()
    proposal = tokens.rows_to_positions(draft(features.to(next(draft.parameters()).dtype))[:, :k].argmax(-1))
    _sync(device)
    t1 = time.perf_counter()

    context = main.encode_features(features)
    codes = torch.zeros(batch, tokens.positions, num_layers, dtype=torch.long, device=device)
    codes[..., :k] = proposal
    choice = tokens.rows_to_positions(main.logits_from_context(context, codes)[:, : k + 1].argmax(-1))
    same = choice[..., :k] == proposal  # [B, P, k]
    agreement = same.float().mean(dim=1)  # [B, k]
    if exact:
        matches = same.all(dim=1)
    else:
        matches = agreement >= tau
        if max_grid_distance is not None:
            distance = (choice[..., :k] - proposal).abs().amax(dim=1)
            matches |= distance <= max_grid_distance
    accepted = _accepted_prefix(matches)  # [B]
    # Layer `accepted` comes from the same pass (it is conditioned on the accepted prefix).
    at = torch.clamp(accepted, max=num_layers - 1)
    keep = (accepted == num_layers)[:, None]  # the draft proposed (and won) every layer
    codes[rows, :, at] = torch.where(keep, codes[rows, :, at], choice[rows, :, at])
    known = torch.clamp(accepted + 1, max=num_layers)  # layers fixed so far, per sample
    later = torch.arange(num_layers, device=device)[None, None, :] >= known[:, None, None]
    codes.masked_fill_(later, 0)  # same filler as greedy decoding
    remaining = num_layers - int(known.min())  # the one host sync of the loop
    for step in range(remaining):
        # A finished sample recomputes its last layer from unchanged inputs: the same tokens, so no mask.
        layer = torch.clamp(known + step, max=num_layers - 1)
        codes[rows, :, layer] = main.logits_from_context(context, codes)[rows, layer].argmax(-1)
    passes = 1 + remaining
    _sync(device)
    t2 = time.perf_counter()
    stats = RSDStats(
        proposed_layers=k, num_layers=num_layers, accepted=accepted.cpu(), agreement=agreement.cpu(),
        main_passes=passes, draft_ms=(t1 - t0) * 1e3, main_ms=(t2 - t1) * 1e3, total_ms=(t2 - t0) * 1e3, exact=exact,
    )
    return tokens.positions_to_chunk(codes), stats
