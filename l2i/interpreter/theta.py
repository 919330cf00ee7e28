"""Θ: from the activations ``H (B, K, T)`` to class logits ``(B, C)``: pooling over time, then a bias-free linear.

Pooling ``z = pool_t(H)`` (``(B, K)``):

* ``attention`` (the authors' best): gated attention — two projections ``K -> attention_dim``, one through tanh
  and one through ReLU, their product mapped to one score per frame, softmax over time, ``z = Σ_t α_t H[:, :, t]``;
* ``max`` / ``mean``: the plain pooling variants.

Logits ``= z θᵀ`` with ``θ (C, K)`` and no bias, so a class's logit is a sum of per-component contributions
``z_k θ_ck`` — the relevance of the interpretation.

``center=True`` (multiclass): a softmax does not change when the same vector is added to every class's weights,
so the sign of a raw ``θ_ck`` means nothing (a component present in every class can carry any offset). The
effective weights are therefore centred over classes, ``θ_c − mean_c' θ_c'`` (the same predictions, the
minimum-norm representative): ``θ_ck > 0`` then means "component k is evidence for c against the other
classes", which is what the relevance needs. Sigmoid outputs (multilabel) have no such invariance:
``center=False``.

``evidence`` (optional, ``(K,)`` bool): the components allowed to carry class evidence. The others get
``θ_ck = 0`` for every class (after centring), so their relevance is 0 and they are never chosen: meant for a
dictionary's *noise* components, learnt on the background to reconstruct it, which are not explanations.
A ``(C, K)`` bool ties each class to its own components (``θ_ck = 0`` outside row c): with a dictionary of
class blocks, class c's logit then rests on c's block alone, and so does its interpretation.
"""

from __future__ import annotations

from typing import Literal, Sequence

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
        center: centre the class weights over classes (multiclass; see the module docstring).
        evidence: ``(K,)`` bool, the components that may carry class evidence (default: all), or ``(C, K)``
            bool, the components of each class (see the module docstring).
        bias: add a per-class offset to the logits (not part of any component's relevance). The authors' Θ
            has none (default).
        attention_dropout: dropout on the *input* of the two attention branches only (the authors' ESC-50
            setting: 0.4): the attention weights are computed from a dropped-out copy of H, while the pooled vector
            ``z = Σ_t α_t H[:, :, t]`` always uses H itself — so the relevance ``z_k θ_ck`` never sees dropout
            (and in eval mode nothing is dropped). Default 0: no dropout.
    """

    def __init__(
        self,
        n_components: int,
        num_classes: int,
        pooling: Literal["attention", "max", "mean"] = "attention",
        attention_dim: int = 256,
        center: bool = False,
        evidence: Tensor | Sequence[bool] | None = None,
        attention_dropout: float = 0.0,
        bias: bool = False,
    ):
        super().__init__()
        self.center = bool(center)
        if not 0.0 <= float(attention_dropout) < 1.0:
            raise ValueError(f"Theta attention_dropout must be in [0, 1), got {attention_dropout}")
        self.attention_dropout = float(attention_dropout)
        if evidence is None:
            evidence = torch.ones(n_components, dtype=torch.bool)
        evidence = torch.as_tensor(evidence, dtype=torch.bool)
        if evidence.dim() == 2:
            if tuple(evidence.shape) != (num_classes, n_components):
                raise ValueError(f"Theta evidence per class must be (C={num_classes}, K={n_components}), got {tuple(evidence.shape)}")
        else:
            evidence = evidence.flatten()
            if evidence.numel() != n_components:
                raise ValueError(f"Theta evidence has {evidence.numel()} entries for K = {n_components} components")
        if not bool(evidence.any()):
            raise ValueError("Theta evidence excludes every component: no class could have any evidence")
        # not persistent: rebuilt from the configuration (older checkpoints load unchanged)
        self.register_buffer("evidence", evidence, persistent=False)
        self.all_evidence = bool(evidence.all())
        if pooling not in ("attention", "max", "mean"):
            raise ValueError(f"Theta pooling must be attention|max|mean, got {pooling!r}")
        self.pooling = pooling
        if pooling == "attention":
            self.attention_tanh = nn.Linear(n_components, attention_dim)
            self.attention_relu = nn.Linear(n_components, attention_dim)
            self.attention_score = nn.Linear(attention_dim, 1)  # with a bias, as the authors'
            if self.attention_dropout > 0:
                # a separate draw for each branch, as the authors' code applies its dropout twice
                self.attention_input_dropout = nn.Dropout(self.attention_dropout)
        self.classifier = nn.Linear(n_components, num_classes, bias=False)
        # a per-class offset outside the relevance: with non-negative pooled activations and θ tied to a block, a
        # bias-free logit cannot go below 0 unless θ turns negative on the block's own components (which then
        # drop out of the interpretation); the offset lets "class absent" be z = 0 on c's block
        self.bias = nn.Parameter(torch.zeros(num_classes)) if bias else None

    @property
    def class_weights(self) -> Tensor:
        """θ, ``(C, K)`` (centred over classes when ``center``; 0 outside ``evidence``, ``(K,)`` or ``(C, K)``)."""
        w = self.classifier.weight
        w = w - w.mean(dim=0, keepdim=True) if self.center else w
        return w if self.all_evidence else w * self.evidence.to(w.dtype)

    def attention(self, activations: Tensor) -> Tensor:
        """Attention weights over time, ``(B, T)`` summing to 1 (``attention`` pooling only)."""
        x = activations.transpose(1, 2)  # (B, T, K)
        if self.attention_dropout > 0:
            drop = self.attention_input_dropout
            gate = torch.tanh(self.attention_tanh(drop(x))) * torch.relu(self.attention_relu(drop(x)))
            return self.attention_score(gate).squeeze(-1).softmax(dim=-1)
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
        logits = pooled @ self.class_weights.t()
        return (logits if self.bias is None else logits + self.bias), pooled
