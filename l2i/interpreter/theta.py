"""Θ: from the activations ``H (B, K, T)`` to class logits ``(B, C)``: pooling over time, then a bias-free linear.

Pooling ``z = pool_t(H)`` (``(B, K)``):

* ``attention`` (the authors' best): gated attention — two projections ``K -> attention_dim``, one through tanh
  and one through ReLU, their product mapped to one score per frame, softmax over time, ``z = Σ_t α_t H[:, :, t]``;
* ``max`` / ``mean``: the plain pooling variants.

Logits ``= z θᵀ`` with ``θ (C, K)`` and no bias, so a class's logit is a sum of per-component contributions
``z_k θ_ck`` — the relevance of the interpretation.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["Theta"]


class Theta(nn.Module):
    """``forward(H (B, K, T)) -> (logits (B, C), pooled (B, K))``.

    Args:
        n_components: K.
        num_classes: C.
        pooling: ``attention`` | ``max`` | ``mean``.
        attention_dim: width of the gated attention projections (authors: 256).
    """

    def __init__(
        self,
        n_components: int,
        num_classes: int,
        pooling: Literal["attention", "max", "mean"] = "attention",
        attention_dim: int = 256,
    ):
        super().__init__()
        if pooling not in ("attention", "max", "mean"):
            raise ValueError(f"Theta pooling must be attention|max|mean, got {pooling!r}")
        self.pooling = pooling
        if pooling == "attention":
            self.attention_tanh = nn.Linear(n_components, attention_dim)
            self.attention_relu = nn.Linear(n_components, attention_dim)
            self.attention_score = nn.Linear(attention_dim, 1)
        self.classifier = nn.Linear(n_components, num_classes, bias=False)

    @property
    def class_weights(self) -> Tensor:
        """θ, ``(C, K)``."""
        return self.classifier.weight

    def attention(self, activations: Tensor) -> Tensor:
        """Attention weights over time, ``(B, T)`` summing to 1 (``attention`` pooling only)."""
        x = activations.transpose(1, 2)  # (B, T, K)
        gate = torch.tanh(self.attention_tanh(x)) * torch.relu(self.attention_relu(x))
        return self.attention_score(gate).squeeze(-1).softmax(dim=-1)

    def pool(self, activations: Tensor) -> Tensor:
        """``H (B, K, T)`` -> ``z (B, K)``."""
        if activations.dim() != 3:
            raise ValueError(f"Theta expects activations (B, K, T), got {tuple(activations.shape)}")
        if self.pooling == "attention":
            return torch.einsum("bkt,bt->bk", activations, self.attention(activations))
        if self.pooling == "max":
            return activations.amax(dim=-1)
        return activations.mean(dim=-1)

    def forward(self, activations: Tensor) -> tuple[Tensor, Tensor]:
        pooled = self.pool(activations)
        return self.classifier(pooled), pooled
