"""AttentionGAN v2 (Tang et al., IJCNN 2019; TNNLS 2021) as its official code trains it.

The official v2 code is CycleGAN's training code with another generator, so this plugin is
:class:`~mrbench_methods.cyclegan.CycleGAN` with the generator of
:mod:`mrbench_methods.nets.attention_resnet`:
a ResNet-9 encoder, a content decoder producing 9 candidate images and an attention decoder
producing 10 softmax masks; the output is the mask-weighted sum of the candidates plus the
input under the last mask. Everything else is CycleGAN's: two 70x70 PatchGANs with instance norm,
least-squares GAN, cycle L1 10 per direction, identity 0.5 x 10, history pools of 50,
Adam(0.5, 0.999) lr 2e-4 with the linear decay over the second half of training, N(0, 0.02)
initialisation, batch 1. At the published size on one-channel images: 11.76 M parameters per
generator, 2.76 M per discriminator. The attention-guided discriminators of the papers are not in
the v2 code and are not used here (docs/methods/attentiongan.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mrbench_methods.base import register, split_direction
from mrbench_methods.cyclegan import CycleGAN
from mrbench_methods.nets.attention_resnet import AttentionResnetGenerator


@register("attentiongan")
class AttentionGAN(CycleGAN):
    display_name = "AttentionGAN"
    citation = "Tang et al., TNNLS 2021"
    family = "gan"
    seconds_per_image_256 = None
    deviations = (
        "One-channel images: each of the 9 candidate images has one channel (the official "
        "generator hard-codes three, so a one-channel input gives a three-channel output) and "
        "each attention mask is applied to that channel.",
        "Augmentation resizes float slices linearly (the official code resizes 8-bit images "
        "bicubically with PIL) and crops at the slice size (256 at paper size).",
    )
    defaults: ClassVar[dict[str, Any]] = {**CycleGAN.defaults, "n_candidates": 9}
    tiny_params: ClassVar[dict[str, Any]] = {**CycleGAN.tiny_params, "n_candidates": 3}

    def build_generator(self) -> nn.Module:
        p = self.params
        return AttentionResnetGenerator(
            1, 1, int(p["ngf"]), int(p["n_blocks"]), int(p["n_candidates"])
        )

    @torch.no_grad()
    def attention(self, x: torch.Tensor, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidates and masks of a translation (for figures): see
        :meth:`AttentionResnetGenerator.parts`."""
        src, _ = split_direction(direction)
        net = self.G_a_to_b if src == "a" else self.G_b_to_a
        return net.parts(x.to(self.device))
