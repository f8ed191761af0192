"""PatchNCE (Park et al., ECCV 2020, "CUT"): contrastive loss between patches of an input and of
its translation, as InstaFormer uses it for content preservation.

For each chosen encoder layer, ``num_patches`` spatial positions are drawn at random (the same
positions for the input and the translation, and for every image of the batch); each feature
vector goes through a small per-layer MLP (``C -> nc -> nc`` with ReLU) and is L2-normalised
as the reference code does it, ``x / (||x|| + 1e-7)``.
The patch of the translation at a position is the query; the input's patch at the same position
is its positive, the input's patches at the other positions of the same image are the negatives
(negatives are not shared across the batch). The loss is the cross-entropy of the positive among
``1 + (P - 1)`` logits scaled by ``1 / tau`` (tau 0.07); the self-similarity entries are masked
with -10 as in the reference code. The key side is detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchSampleMLP(nn.Module):
    """Per-layer projection heads ``Linear(C, nc), ReLU, Linear(nc, nc)`` plus L2 normalisation."""

    def __init__(self, in_channels: list[int], nc: int = 256, init_gain: float = 0.02) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)) for c in in_channels
        )
        for m in self.modules():  # CUT/InstaFormer: xavier-normal weights (gain 0.02), zero bias
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight, gain=init_gain)
                nn.init.zeros_(m.bias)

    def forward(
        self,
        feats: list[torch.Tensor],
        num_patches: int,
        patch_ids: list[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Sample (or reuse) positions of each ``(B, C, H, W)`` map; returns ``(B * P, nc)``
        normalised vectors per layer (image-major) and the positions used."""
        if len(feats) != len(self.heads):
            raise ValueError(f"PatchSampleMLP: {len(feats)} feature maps for {len(self.heads)}")
        out, ids = [], []
        for k, (feat, head) in enumerate(zip(feats, self.heads, strict=True)):
            flat = feat.flatten(2).transpose(1, 2)  # (B, HW, C)
            if patch_ids is not None:
                pid = patch_ids[k]
            else:
                pid = torch.randperm(flat.shape[1], device=feat.device)[:num_patches]
            x = head(flat[:, pid].flatten(0, 1))
            # the official Normalize: x / (||x|| + 1e-7), not x / max(||x||, eps) as
            # F.normalize: the heads' 0.02 init gives norms of ~1e-6, where the two differ
            out.append(x / (x.norm(p=2, dim=1, keepdim=True) + 1e-7))
            ids.append(pid)
        return out, ids


def patch_nce_loss(
    feat_q: torch.Tensor, feat_k: torch.Tensor, batch_size: int, tau: float = 0.07
) -> torch.Tensor:
    """Mean PatchNCE loss of queries ``(B * P, D)`` against keys ``(B * P, D)`` (keys detached)."""
    feat_k = feat_k.detach()
    n, dim = feat_q.shape
    l_pos = (feat_q * feat_k).sum(dim=1, keepdim=True)
    q = feat_q.view(batch_size, -1, dim)
    k = feat_k.view(batch_size, -1, dim)
    p = q.shape[1]
    l_neg = torch.bmm(q, k.transpose(1, 2))
    eye = torch.eye(p, device=q.device, dtype=torch.bool)[None]
    l_neg = l_neg.masked_fill(eye, -10.0).view(-1, p)
    logits = torch.cat([l_pos, l_neg], dim=1) / tau
    target = torch.zeros(n, dtype=torch.long, device=q.device)
    return F.cross_entropy(logits.float(), target)
