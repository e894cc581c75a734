"""A FAST-style tokenizer without BPE: DCT over time per action dim, scaled and rounded.

Bits per chunk are the empirical entropy of the rounded coefficients (per coefficient slot,
measured on the data being coded), the length an ideal entropy coder would reach; BPE, as in
FAST, approaches it from above.
"""

from __future__ import annotations

import math

import torch


def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix `[n, n]`: `coeffs = D @ signal`, `signal = D.T @ coeffs`."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.float()


class DCTTokenizer:
    """chunks `[N, C, A]` → integer coefficients `[N, C, A]` = round(scale * DCT_time(x))."""

    def __init__(self, chunk_size: int, scale: float = 10.0) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale
        self.d = dct_matrix(chunk_size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(torch.einsum("kc,nca->nka", self.d, x) * self.scale).long()

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kc,nka->nca", self.d, tokens.float() / self.scale)

    @staticmethod
    def entropy_bits_per_chunk(tokens: torch.Tensor) -> float:
        """Sum over coefficient slots `[C, A]` of the empirical entropy (bits) of their symbols."""
        flat = tokens.reshape(tokens.shape[0], -1)
        total = 0.0
        for slot in range(flat.shape[1]):
            _, counts = torch.unique(flat[:, slot], return_counts=True)
            p = counts.double() / counts.sum()
            total += float(-(p * p.log2()).sum())
        return total
