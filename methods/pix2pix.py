"""pix2pix (Isola et al. 2017), the supervised reference: trained on co-registered slice pairs.

One model per direction, as the reference implementation trains one model per ``--direction``:
a U-Net generator (:class:`mrbench_methods.nets.unet.UnetGenerator`, ``unet_256`` at paper size)
``G_a_to_b`` / ``G_b_to_a`` and a conditional 70x70 PatchGAN with batch norm
(:class:`mrbench_methods.nets.patchgan.PatchDiscriminator`, ``norm="batch"``) ``D_b`` / ``D_a``
that judges the source image and a target-contrast image concatenated (2 channels). The
``paired`` trait makes the trainer give it the ``a`` and the ``b`` slice of the same position
(voxel-aligned after co-registration) in every batch item. One training step, per direction,
in the reference code's order:

1. discriminator: ``0.5 * [BCE(D(a, G(a)), 0) + BCE(D(a, b), 1)]`` on raw logits (the vanilla
   GAN loss, ``BCEWithLogits``), the fake detached, no image pool; one Adam step;
2. generator, the discriminator frozen: ``BCE(D(a, G(a)), 1) + lambda_l1 * |G(a) - b|``
   (``lambda_l1`` 100); one Adam step.

Adam(0.5, 0.999) at lr 2e-4 for both networks, N(0, 0.02) initialisation (batch-norm scales
N(1, 0.02)); the schedule (100 epochs constant, 100 of linear decay) is the trainer's ``linear``
schedule. With ``ngf=ndf=64`` and ``num_downs=8`` the networks have 54,407,809 (generator) and
2,764,609 (discriminator) parameters per direction on one-channel images.

Test mode (``test_mode``): the reference ``test.py`` puts the model in eval mode only with
``--eval``; by default the generator runs as in training, batch norm normalising with the test
batch's own statistics and dropout active, which the pix2pix paper describes as deliberate.
``"train"`` (the default) follows that default with the reference's test batch of one: every
slice goes through the generator alone, and dropout draws from a generator seeded with
``test_seed``, so a slice's translation depends on nothing but the slice (not on its batch
neighbours, not on earlier calls); the running statistics are left as training left them.
``"eval"`` is ``--eval``: running statistics, no dropout.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mrbench_methods.base import TranslationMethod, register, split_direction
from mrbench_methods.cyclegan import CycleGAN
from mrbench_methods.nets.init import init_weights
from mrbench_methods.nets.patchgan import PatchDiscriminator
from mrbench_methods.nets.unet import UnetGenerator

TEST_MODES = ("train", "eval")


@register("pix2pix")
class Pix2Pix(TranslationMethod):
    display_name = "pix2pix"
    citation = "Isola et al., CVPR 2017"
    family = "supervised"
    paired = True
    defaults: ClassVar[dict[str, Any]] = {
        "ngf": 64,
        "ndf": 64,
        "num_downs": 8,
        "n_layers_d": 3,
        "dropout": 0.5,
        "lambda_l1": 100.0,
        "lr": 2e-4,
        "beta1": 0.5,
        "beta2": 0.999,
        "init_gain": 0.02,
        "test_mode": "train",
        "test_seed": 0,
    }
    tiny_params: ClassVar[dict[str, Any]] = {"ngf": 8, "ndf": 8, "num_downs": 4, "n_layers_d": 2}
    optimizer = "Adam"
    deviations = (
        "One-channel slices instead of RGB images (1-channel generator input and output, "
        "2-channel discriminator input).",
        "Both directions are trained in one run on the same batches, each with its own "
        "networks and optimisers (the official code trains one run per direction).",
        "Augmentation resizes float slices linearly (the official code resizes 8-bit images "
        "bicubically with PIL); the two slices of a pair get the same resize, crop and flip.",
        "Test mode: a slice's dropout mask comes from a fixed seed, so translations are "
        "reproducible (the official test draws it from the global random state).",
    )
    #: the official recipe is the repository's one ``train.py`` shared with CycleGAN (batch 1,
    #: 100 epochs at lr 2e-4 then 100 epochs of linear decay, resize 286 / random crop 256 /
    #: flip, the last weights)
    recipes: ClassVar[dict[str, dict[str, Any]]] = CycleGAN.recipes
    training_defaults: ClassVar[dict[str, Any]] = {
        "lr_schedule": "linear",
        "lr_decay_start": 0.5,
        "batch_size": 1,
        "select": "last",
    }

    def __init__(self, params: dict[str, Any] | None = None, image_size: int = 256) -> None:
        super().__init__(params, image_size)
        p = self.params
        downs = int(p["num_downs"])
        if downs < 2:
            raise ValueError(f"num_downs: must be >= 2, got {downs}")
        if image_size % 2**downs:
            raise ValueError(
                f"num_downs: image_size must be a multiple of 2**num_downs = {2**downs}, "
                f"got {image_size}"
            )
        if p["test_mode"] not in TEST_MODES:
            raise ValueError(f"test_mode: {p['test_mode']!r} is not one of {', '.join(TEST_MODES)}")
        if not 0 <= float(p["dropout"]) < 1:
            raise ValueError(f"dropout: must be in [0, 1), got {p['dropout']}")
        gain = float(p["init_gain"])

        def gen() -> UnetGenerator:
            return init_weights(
                UnetGenerator(1, 1, downs, int(p["ngf"]), float(p["dropout"])), gain
            )

        def disc() -> PatchDiscriminator:
            net = PatchDiscriminator(2, int(p["ndf"]), int(p["n_layers_d"]), norm="batch")
            return init_weights(net, gain)

        self.G_a_to_b, self.G_b_to_a = gen(), gen()
        self.D_b, self.D_a = disc(), disc()
        betas = (float(p["beta1"]), float(p["beta2"]))

        def adam(net: nn.Module) -> torch.optim.Optimizer:
            return torch.optim.Adam(net.parameters(), lr=float(p["lr"]), betas=betas)

        self.opts = {
            "G_a_to_b": adam(self.G_a_to_b),
            "D_b": adam(self.D_b),
            "G_b_to_a": adam(self.G_b_to_a),
            "D_a": adam(self.D_a),
        }

    # ---------------------------------------------------------------- training
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return dict(self.opts)

    @staticmethod
    def _gan(logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), target.float())

    def _step_direction(
        self,
        gen: nn.Module,
        disc: nn.Module,
        names: tuple[str, str],
        pair: tuple[torch.Tensor, ...],
    ) -> dict[str, float]:
        """One optimisation of a direction's discriminator, then of its generator."""
        real_a, real_b = pair
        opt_g, opt_d = self.opts[names[0]], self.opts[names[1]]
        fake_b = gen(real_a)
        disc.requires_grad_(True)
        opt_d.zero_grad(set_to_none=True)
        loss_d_fake = self._gan(disc(torch.cat([real_a, fake_b.detach()], 1)), False)
        loss_d_real = self._gan(disc(torch.cat([real_a, real_b], 1)), True)
        loss_d = 0.5 * (loss_d_fake + loss_d_real)
        loss_d.backward()
        opt_d.step()
        disc.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        loss_g_gan = self._gan(disc(torch.cat([real_a, fake_b], 1)), True)
        loss_g_l1 = nn.functional.l1_loss(fake_b.float(), real_b.float())
        loss_g = loss_g_gan + float(self.params["lambda_l1"]) * loss_g_l1
        loss_g.backward()
        opt_g.step()
        disc.requires_grad_(True)
        return {
            f"{names[0]}_gan": float(loss_g_gan.detach()),
            f"{names[0]}_l1": float(loss_g_l1.detach()),
            names[1]: float(loss_d.detach()),
        }

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        a, b = batch["a"], batch["b"]
        out = self._step_direction(self.G_a_to_b, self.D_b, ("G_a_to_b", "D_b"), (a, b))
        out |= self._step_direction(self.G_b_to_a, self.D_a, ("G_b_to_a", "D_a"), (b, a))
        return out

    # ------------------------------------------------------------- translation
    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        src, _ = split_direction(direction)
        net = self.G_a_to_b if src == "a" else self.G_b_to_a
        if self.params["test_mode"] == "eval":
            was = net.training
            net.eval()
            try:
                return net(x).clamp(-1, 1)
            finally:
                net.train(was)
        return torch.cat([self._translate_as_trained(net, x[i : i + 1]) for i in range(len(x))])

    def _translate_as_trained(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One slice through ``net`` in training mode (batch statistics of this slice, dropout
        from ``test_seed``); the running statistics and the random state are left untouched."""
        saved = {k: b.clone() for k, b in net.named_buffers()}
        was = net.training
        devices = [x.device] if x.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(int(self.params["test_seed"]))
                net.train()
                return net(x).clamp(-1, 1)
        finally:
            net.train(was)
            for k, b in net.named_buffers():
                b.copy_(saved[k])
