"""Memory module of MemAE (Gong et al., "Memorizing Normality to Detect Anomaly", ICCV 2019).

Each latent vector (one per (t, h, w) cell of the encoder output) is a query that addresses
``N`` learnable memory items; the decoder sees only the weighted sum of items, so an anomaly
can only be rebuilt out of normal prototypes.

Pitfalls handled here (see the official repo, models/memory_module.py):

* The paper addresses with cosine similarity, the official code with a plain dot product.
  With cosine similarity each logit is bounded by 1, so over N = 2000 slots the softmax stays
  near-uniform (every weight about 1/2000 = 0.0005) and none can pass the shrink threshold
  lambda = 0.0025: shrinkage then zeroes every weight. Dot-product addressing (the default)
  is unbounded and does train; ``addressing="cosine"`` is kept as an option.
* Hard shrinkage is ReLU(w - lambda) * w / (|w - lambda| + eps), then L1 re-normalisation,
  and runs only when lambda > 0.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Addressing = Literal["dot", "cosine"]

_EPS = 1e-12


def hard_shrink_relu(weights: torch.Tensor, threshold: float) -> torch.Tensor:
    """Zero addressing weights below ``threshold`` and re-normalise to unit L1 norm.

    Args:
        weights: (Q, N) non-negative addressing weights, rows summing to 1.
        threshold: lambda; weights <= lambda become exactly 0.

    Returns:
        (Q, N) sparse weights, rows summing to 1 (or all zero if every weight was shrunk).
    """
    shrunk = F.relu(weights - threshold) * weights / (torch.abs(weights - threshold) + _EPS)
    return shrunk / shrunk.sum(dim=1, keepdim=True).clamp_min(_EPS)


def addressing_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Mean over queries of the entropy sum_i -w_i log(w_i + 1e-12) of (Q, N) weights."""
    return (-weights * torch.log(weights + _EPS)).sum(dim=1).mean()


def live_fraction(weights: torch.Tensor) -> torch.Tensor:
    """Share of (Q, N) shrunk weights' rows that address at least one item, a 0-dim float32
    tensor where the weights are (the training loop sums it there, without waiting for it).

    A dead row (every weight shrunk away) passes a zero code to the decoder and no gradient to
    the encoder or the memory, so a low share early in training means a slow start.
    """
    return (weights.detach().sum(dim=1) > 0).float().mean()


def raw_max_weights(memory: "MemoryModule", queries: torch.Tensor) -> torch.Tensor:
    """(Q,) largest softmax addressing weight of each query before shrinkage.

    A query survives hard shrinkage with threshold lambda exactly when this exceeds lambda.
    """
    return memory.softmax_weights(queries).max(dim=1).values


class MemoryModule(nn.Module):
    """Addressable memory of ``num_items`` prototypes of dimension ``dim``.

    Args:
        num_items: N, number of memory items (2000 in the paper for video).
        dim: C, feature dimension; equals the encoder's last width.
        shrink_threshold: lambda of hard shrinkage; 0 disables it.
        addressing: ``"dot"`` (official code, default) or ``"cosine"`` (paper text).
    """

    def __init__(
        self,
        num_items: int,
        dim: int,
        shrink_threshold: float = 0.0025,
        addressing: Addressing = "dot",
    ) -> None:
        super().__init__()
        if addressing not in ("dot", "cosine"):
            raise ValueError(f"addressing must be 'dot' or 'cosine', got {addressing!r}")
        self.num_items = num_items
        self.dim = dim
        self.shrink_threshold = shrink_threshold
        self.addressing = addressing
        bound = 1.0 / math.sqrt(dim)
        self.items = nn.Parameter(torch.empty(num_items, dim).uniform_(-bound, bound))

    def softmax_weights(self, queries: torch.Tensor) -> torch.Tensor:
        """Addressing weights of (Q, C) queries before shrinkage: (Q, N), rows sum to 1."""
        if self.addressing == "cosine":
            logits = F.normalize(queries, dim=1) @ F.normalize(self.items, dim=1).t()
        else:
            logits = queries @ self.items.t()
        return F.softmax(logits, dim=1)

    def address(self, queries: torch.Tensor) -> torch.Tensor:
        """Addressing weights of (Q, C) queries over the items after hard shrinkage: (Q, N), rows
        sum to 1 (or 0 where every weight was shrunk)."""
        weights = self.softmax_weights(queries)
        if self.shrink_threshold > 0:
            weights = hard_shrink_relu(weights, self.shrink_threshold)
        return weights

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace every latent cell by its memory read-out.

        Args:
            z: (B, C, T, H, W) encoder output.

        Returns:
            ``(z_hat, weights)``: z_hat (B, C, T, H, W) built from memory items only, and the
            (B*T*H*W, N) addressing weights, for the entropy loss.
        """
        b, c, t, h, w = z.shape
        queries = z.permute(0, 2, 3, 4, 1).reshape(-1, c)
        weights = self.address(queries)
        read = weights @ self.items
        z_hat = read.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3).contiguous()
        return z_hat, weights
