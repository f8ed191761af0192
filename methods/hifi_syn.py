"""HiFi-Syn (Yu et al., Medical Image Analysis 100 (2025) 103390; arXiv 2311.12461): a
reconstruction from the public description only.

No code was published (the authors' repository holds only a README announcing generator,
discriminator and memory-bank modules, with structure labels from SPM, FSL FAST or FreeSurfer,
and acknowledging MGUIT, DRIT++ and CycleGAN). The paper's method section could not be read
through this project's sources; what is public is the abstract: *hierarchical granularity
discrimination* on a disentangled backbone, with three levels:

1. **pixel-level discrimination using a Brain Memory Bank**: here MGUIT's class-wise key-value
   memory (:class:`mrbench_methods.nets.memory.ClassMemory`) over brain tissue classes, with its
   per-pixel
   read and its pixel-to-item losses (each pixel's content key must single out one memory item of
   its class: a per-pixel discrimination between items);
2. **structure-level discrimination on each brain structure with a re-weighting strategy to focus
   on hard samples**: a structure discriminator per domain (:class:`StructureDiscriminator`,
   PatchGAN on the image concatenated with the one-hot structure map of the image's anatomy) that
   outputs one logit map per structure; its adversarial loss is computed per structure over the
   patches that structure occupies, and the generator's per-structure losses are re-weighted by
   ``K softmax(L_s / tau)`` (detached), so that the structures the discriminator still tells apart
   (hard samples) weigh more;
3. **global-level discrimination to ensure anatomical consistency**: DRIT++'s multi-scale image
   discriminators on whole images plus the content discriminator on the content maps (anatomy
   shared by both contrasts).

The backbone, losses, update order and optimiser are MGUIT's (:mod:`mrbench_methods.mguit`), which
the
authors acknowledge and which their group's public MouseGAN++ code (DRIT++-based, reconstruction
weight 10, Adam 1e-4, 1200 epochs) resembles. Every open choice is listed in
``docs/methods/hifi_syn.md`` and in :attr:`HiFiSyn.deviations`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mrbench_methods.base import register
from mrbench_methods.mguit import MGUIT, _gauss_init
from mrbench_methods.nets.memory import DOMAINS


class StructureDiscriminator(nn.Module):
    """PatchGAN on ``cat(image, one-hot structures)`` -> one logit map per structure."""

    def __init__(self, n_classes: int, ch: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width, out = 1 + n_classes, ch
        for i in range(n_layers):
            layers += [nn.Conv2d(width, out, 4, stride=2, padding=1)]
            if i:
                layers.append(nn.InstanceNorm2d(out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width, out = out, min(out * 2, 8 * ch)
        layers += [
            nn.Conv2d(width, width, 4, padding=1),
            nn.InstanceNorm2d(width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, n_classes, 4, padding=1),
        ]
        self.net = nn.Sequential(*layers)
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, onehot], 1))


def hard_structure_weights(losses: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Re-weighting towards hard structures: ``K softmax(L / tau)`` over the ``K`` structures'
    generator losses (detached; mean 1, so equal losses give plain averaging)."""
    losses = losses.detach()
    return losses.shape[0] * torch.softmax(losses / tau, 0)


def _onehot(labels: torch.Tensor, n: int) -> torch.Tensor:
    lab = labels[:, 0].long().clamp(0, n - 1)
    return F.one_hot(lab, n).permute(0, 3, 1, 2).float()


@register("hifi_syn")
class HiFiSyn(MGUIT):
    display_name = "HiFi-Syn"
    citation = "Yu et al., MedIA 2025"
    family = "disentangled"
    reconstruction = True
    needs_labels = True
    deviations: ClassVar[tuple[str, ...]] = (
        "Reconstruction from the abstract and the public README only: the paper's method "
        "section could not be consulted, so every architectural and loss detail is a choice "
        "(docs/methods/hifi_syn.md).",
        "Backbone, losses, update order and optimiser are MGUIT's (acknowledged by the authors).",
        "The brain memory bank is MGUIT's class-wise memory over tissue classes (background, CSF, "
        "GM, WM, tumour) from Atropos, not SPM/FSL FAST/FreeSurfer structure labels.",
        "Structure-level discrimination: one PatchGAN per domain with one logit map per structure, "
        "losses re-weighted by a softmax over the per-structure generator losses (tau 1).",
        "Test time reads the memory over the keys of the structures seen in training (no labels "
        "at test time).",
    )
    defaults: ClassVar[dict[str, Any]] = {
        **MGUIT.defaults,
        "struct_ch": 64,
        "struct_layers": 3,
        "lambda_struct": 1.0,
        "reweight_tau": 1.0,
        "use_memory_losses": True,
        "use_structure": True,
        "use_global": True,
    }
    tiny_params: ClassVar[dict[str, Any]] = {
        **MGUIT.tiny_params,
        "struct_ch": 4,
        "struct_layers": 2,
    }

    def __init__(self, params: dict[str, Any] | None = None, image_size: int = 256) -> None:
        super().__init__(params, image_size)
        p = self.params
        k = self.memory.n_classes
        self.dis_struct = nn.ModuleDict(
            {
                d: StructureDiscriminator(k, int(p["struct_ch"]), int(p["struct_layers"]))
                for d in DOMAINS
            }
        )
        _gauss_init(self.dis_struct)
        if not p["use_memory_losses"]:
            self.params["lambda_memory"] = 0.0
        if not p["use_global"]:
            self.params["lambda_adv"] = 0.0
            self.params["lambda_content_adv"] = 0.0
        self.opt_Ds = torch.optim.Adam(
            self.dis_struct.parameters(),
            lr=float(p["lr"]),
            betas=(float(p["beta1"]), float(p["beta2"])),
            weight_decay=float(p["weight_decay"]),
        )

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), "D_struct": self.opt_Ds}

    @classmethod
    def components(cls, params: dict[str, Any]) -> dict[str, bool]:
        return {
            "Pixel (memory)": bool(params.get("use_memory_losses", True)),
            "Structure": bool(params.get("use_structure", True)),
            "Global": bool(params.get("use_global", True)),
        }

    def _per_structure(
        self, logits: torch.Tensor, onehot: torch.Tensor, real: bool
    ) -> torch.Tensor:
        """BCE per structure over the patches it occupies -> ``(K,)`` (0 for absent ones)."""
        occ = F.adaptive_avg_pool2d(onehot, logits.shape[2:])
        target = torch.full_like(logits, 1.0 if real else 0.0)
        bce = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
        area = occ.sum((0, 2, 3))
        return (bce * occ).sum((0, 2, 3)) / area.clamp_min(1e-6)

    def _extra_losses(
        self, batch: dict[str, torch.Tensor], fakes: dict[str, torch.Tensor], classes: dict
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        p = self.params
        if not p["use_structure"] or float(p["lambda_struct"]) == 0:
            return {}, {}
        k = self.memory.n_classes
        other = {"a": "b", "b": "a"}
        onehot = {d: _onehot(batch[f"label_{d}"], k) for d in DOMAINS}
        # discriminator step: real images with their own structures, fakes with their source's
        self.dis_struct.requires_grad_(True)
        self.opt_Ds.zero_grad(set_to_none=True)
        out = {}
        for d in DOMAINS:
            net, o = self.dis_struct[d], other[d]
            present_r = onehot[d].sum((0, 2, 3)) > 0
            present_f = onehot[o].sum((0, 2, 3)) > 0
            lr_ = self._per_structure(net(batch[d], onehot[d]), onehot[d], True)[present_r]
            lf_ = self._per_structure(net(fakes[d].detach(), onehot[o]), onehot[o], False)
            loss = lr_.mean() + lf_[present_f].mean()
            loss.backward()
            out[f"D_struct_{d}"] = float(loss.detach())
        self.opt_Ds.step()
        # generator losses, re-weighted towards the hard structures
        self.dis_struct.requires_grad_(False)
        losses = {}
        tau = float(p["reweight_tau"])
        for d in DOMAINS:
            o = other[d]
            present = onehot[o].sum((0, 2, 3)) > 0
            per = self._per_structure(self.dis_struct[d](fakes[d], onehot[o]), onehot[o], True)
            per = per[present]
            weights = hard_structure_weights(per, tau)
            losses[f"struct_{d}"] = float(p["lambda_struct"]) * (weights * per).mean()
        self.dis_struct.requires_grad_(True)
        return losses, out
