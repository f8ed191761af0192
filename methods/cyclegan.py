"""CycleGAN (Zhu et al. 2017) as the reference implementation trains it.

Two ResNet generators, ``G_a_to_b`` (A -> B) and ``G_b_to_a`` (B -> A), and two 70x70 PatchGAN
discriminators, ``D_b`` (judges images of domain ``b``) and ``D_a``. One training step:

1. generators: least-squares GAN loss ``(D(G(x)) - 1)^2`` in both directions, L1 cycle loss
   ``|G_BA(G_AB(a)) - a|`` weighted ``lambda_cycle`` (10), and identity loss ``|G_AB(b) - b|``
   weighted ``lambda_identity * lambda_cycle`` (0.5 x 10); one Adam step on both generators with
   the discriminators frozen;
2. discriminators: ``0.5 * [(D(real) - 1)^2 + D(fake)^2]``, where the fakes come from a history
   pool of the last ``pool_size`` (50) generated images (Shrivastava et al. 2017): once full, each
   new image is, with probability 1/2, swapped for a random stored one; one Adam step on both.

Adam(0.5, 0.999) with lr 2e-4 for both networks; the schedule (constant for the first half of
training, then linear decay to zero) is the trainer's ``linear`` schedule, suggested here in
:attr:`CycleGAN.training_defaults`. Instance norm and N(0, 0.02) initialisation throughout. The
paper size (``ngf=ndf=64``, 9 residual blocks, 3 discriminator layers) gives 11.37 M parameters per
generator and 2.76 M per discriminator on one-channel images; the demo shrinks widths and depth
through the same code.

The pool draws from its own random generator, seeded from torch's global generator when the model
is built and saved with the pool contents in :meth:`extra_state`, so a resumed run makes the
same choices as an uninterrupted one.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import torch
from torch import nn

from mrbench_methods.base import TranslationMethod, register, split_direction
from mrbench_methods.nets.init import init_weights
from mrbench_methods.nets.patchgan import PatchDiscriminator
from mrbench_methods.nets.resnet import ResnetGenerator


class ImagePool:
    """History of generated images shown to the discriminators (size 0 disables it)."""

    def __init__(self, size: int, generator: torch.Generator) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = generator

    def _coin(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images.detach()
        out = []
        for image in images.detach():
            image = image[None]
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self._coin() > 0.5:
                k = int(torch.randint(len(self.images), (), generator=self.generator))
                out.append(self.images[k].clone())
                self.images[k] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state(self) -> list[torch.Tensor]:
        return [im.cpu() for im in self.images]

    def load(self, images: list[torch.Tensor], device: torch.device) -> None:
        self.images = [im.to(device) for im in images]


@register("cyclegan")
class CycleGAN(TranslationMethod):
    display_name = "CycleGAN"
    citation = "Zhu et al., ICCV 2017"
    family = "gan"
    seconds_per_image_256 = 0.06
    defaults: ClassVar[dict[str, Any]] = {
        "ngf": 64,
        "ndf": 64,
        "n_blocks": 9,
        "n_layers_d": 3,
        "lambda_cycle": 10.0,
        "lambda_identity": 0.5,
        "pool_size": 50,
        "lr": 2e-4,
        "beta1": 0.5,
        "beta2": 0.999,
        "init_gain": 0.02,
    }
    tiny_params: ClassVar[dict[str, Any]] = {
        "ngf": 8,
        "ndf": 8,
        "n_blocks": 2,
        "n_layers_d": 2,
        "pool_size": 4,
    }
    optimizer = "Adam"
    deviations = (
        "One-channel slices instead of RGB images.",
        "Augmentation resizes float slices linearly (the official code resizes 8-bit images "
        "bicubically with PIL) and crops at the slice size (256 at paper size).",
    )
    #: the official recipe (``train.py`` defaults): batch 1, 100 epochs at lr 2e-4 then 100
    #: epochs of linear decay, resize 286 / random crop 256 / flip, the last epoch's weights
    recipes: ClassVar[dict[str, dict[str, Any]]] = {
        "official": {
            "batch_size": 1,
            "epochs": 200,
            "lr_schedule": "linear",
            "lr_decay_start": 0.5,
            "augment": "resize_crop_flip",
            "select": "last",
        },
        "equal_budget": {
            "lr_schedule": "linear",
            "lr_decay_start": 0.5,
            "augment": "resize_crop_flip",
            "select": "last",
        },
    }
    #: the reference schedule: constant lr for half of training, then linear decay to zero
    training_defaults: ClassVar[dict[str, Any]] = {
        "lr_schedule": "linear",
        "lr_decay_start": 0.5,
        "batch_size": 1,
    }

    def __init__(self, params: dict[str, Any] | None = None, image_size: int = 256) -> None:
        super().__init__(params, image_size)
        p = self.params
        if image_size % 4:
            raise ValueError(f"cyclegan: image_size must be a multiple of 4, got {image_size}")
        gain = float(p["init_gain"])

        def disc() -> PatchDiscriminator:
            return init_weights(PatchDiscriminator(1, int(p["ndf"]), int(p["n_layers_d"])), gain)

        self.G_a_to_b = init_weights(self.build_generator(), gain)
        self.G_b_to_a = init_weights(self.build_generator(), gain)
        self.D_b = disc()
        self.D_a = disc()
        betas = (float(p["beta1"]), float(p["beta2"]))
        self.opt_G = torch.optim.Adam(
            itertools.chain(self.G_a_to_b.parameters(), self.G_b_to_a.parameters()),
            lr=float(p["lr"]),
            betas=betas,
        )
        self.opt_D = torch.optim.Adam(
            itertools.chain(self.D_b.parameters(), self.D_a.parameters()),
            lr=float(p["lr"]),
            betas=betas,
        )
        self._pool_rng = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        self.pool_b = ImagePool(int(p["pool_size"]), self._pool_rng)  # fakes for D_b
        self.pool_a = ImagePool(int(p["pool_size"]), self._pool_rng)  # fakes for D_a

    def build_generator(self) -> nn.Module:
        """One generator (uninitialised); subclasses with another generator override this."""
        return ResnetGenerator(1, 1, int(self.params["ngf"]), int(self.params["n_blocks"]))

    # ---------------------------------------------------------------- training
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    @staticmethod
    def _lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(pred) if real else torch.zeros_like(pred)
        return nn.functional.mse_loss(pred.float(), target.float())

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        p = self.params
        real_a, real_b = batch["a"], batch["b"]
        lam_c = float(p["lambda_cycle"])
        lam_i = float(p["lambda_identity"])
        l1 = nn.functional.l1_loss

        # generators (discriminators frozen)
        for d in (self.D_a, self.D_b):
            d.requires_grad_(False)
        fake_b = self.G_a_to_b(real_a)
        rec_a = self.G_b_to_a(fake_b)
        fake_a = self.G_b_to_a(real_b)
        rec_b = self.G_a_to_b(fake_a)
        losses: dict[str, torch.Tensor] = {}
        if lam_i > 0:
            losses["idt_b"] = l1(self.G_a_to_b(real_b).float(), real_b.float()) * lam_c * lam_i
            losses["idt_a"] = l1(self.G_b_to_a(real_a).float(), real_a.float()) * lam_c * lam_i
        losses["G_a_to_b"] = self._lsgan(self.D_b(fake_b), True)
        losses["G_b_to_a"] = self._lsgan(self.D_a(fake_a), True)
        losses["cycle_a"] = l1(rec_a.float(), real_a.float()) * lam_c
        losses["cycle_b"] = l1(rec_b.float(), real_b.float()) * lam_c
        loss_g = sum(losses.values())
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()

        # discriminators, on fakes from the history pools
        for d in (self.D_a, self.D_b):
            d.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        pooled_b = self.pool_b.query(fake_b)
        loss_d_b = 0.5 * (
            self._lsgan(self.D_b(real_b), True) + self._lsgan(self.D_b(pooled_b), False)
        )
        loss_d_b.backward()
        pooled_a = self.pool_a.query(fake_a)
        loss_d_a = 0.5 * (
            self._lsgan(self.D_a(real_a), True) + self._lsgan(self.D_a(pooled_a), False)
        )
        loss_d_a.backward()
        self.opt_D.step()

        out = {k: float(v.detach()) for k, v in losses.items()}
        out["G"] = float(loss_g.detach())
        out["D_b"] = float(loss_d_b.detach())
        out["D_a"] = float(loss_d_a.detach())
        return out

    # ------------------------------------------------------------- translation
    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        src, _ = split_direction(direction)
        net = self.G_a_to_b if src == "a" else self.G_b_to_a
        return net(x).clamp(-1, 1)

    # ------------------------------------------------------------------ state
    def extra_state(self) -> dict[str, Any]:
        return {
            "pool_a": self.pool_a.state(),
            "pool_b": self.pool_b.state(),
            "pool_rng": self._pool_rng.get_state(),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.pool_a.load(list(state["pool_a"]), self.device)
        self.pool_b.load(list(state["pool_b"]), self.device)
        self._pool_rng.set_state(state["pool_rng"])
