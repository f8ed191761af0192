"""InstaFormer (Kim et al., CVPR 2022) without instance boxes, one model per direction.

The official model translates one way, A -> B; the two directions of a contrast pair (domains
``a`` and ``b``) use two independent models inside
this plugin, ``G_a_to_b`` and ``G_b_to_a`` (networks in
:mod:`mrbench_methods.nets.instaformer`),
each with its discriminator on the target domain (``D_b``, ``D_a``: anti-aliased PatchGAN with
BatchNorm) and its PatchNCE projection heads (``F_a_to_b``, ``F_b_to_a``).

One training step, for each direction A -> B, in the official order:

1. Forward: translation ``fake = dec(E_c(A), z)`` with a random style ``z ~ N(0, I)`` (8-d), and
   reconstruction ``recon = dec(E_c(B), E_s(B))``; the content encoder also returns its layers
   ``nce_layers`` (0, 4, 8: the padded input and the two stride-1 convolutions) for PatchNCE.
2. Discriminator (LSGAN): ``0.5 * [(D(fake) - 0)^2 + (D(B) - 1)^2]``; Adam step.
3. Generator and heads: ``lambda_gan (D(fake) - 1)^2 + lambda_recon |recon - B|
   + lambda_style |E_s(recon) - E_s(B)| + lambda_nce PatchNCE(E_c(fake), E_c(A))`` (PatchNCE:
   256 patches per layer, tau 0.07, averaged over layers); Adam steps on the generator and on
   the heads. The instance-level NCE (weight 2 in the paper) needs boxes and is off.

Adam 2e-4, betas (0.5, 0.999) for generator and discriminator; the heads' Adam uses PyTorch's
default betas (0.9, 0.999), as in the official code. Published batch 5, 200 epochs, constant
learning rate.

Test time: the style code is the MEAN style code of the target modality's training slices
(computed by the direction's style encoder in :meth:`prepare_inference`, kept in buffers; a
running mean of training codes until then); ``style_mode: prior`` draws ``z ~ N(0, I)`` as the
official translation does. The paired target image is never read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from mrbench_methods.base import DIRECTIONS, TranslationMethod, register, split_direction
from mrbench_methods.nets.adain import STYLE_MEAN_DEFAULTS, mean_style_codes
from mrbench_methods.nets.instaformer import InstaFormerGenerator
from mrbench_methods.nets.patchgan import PatchDiscriminator
from mrbench_methods.nets.patchnce import PatchSampleMLP, patch_nce_loss


def _f(value: torch.Tensor) -> float:
    return float(value.detach())


def _lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(pred) if real else torch.zeros_like(pred)
    return F.mse_loss(pred.float(), target.float())


@register("instaformer")
class InstaFormer(TranslationMethod):
    display_name = "InstaFormer"
    citation = "Kim et al., CVPR 2022"
    family = "style-based gan"
    deviations = (
        "No instance boxes (brain MRI slices have none): the box embedding, box decoder, "
        "RoI-aligned box tokens and the instance-level NCE loss (weight 2) are off.",
        "One-channel (grayscale) input and output instead of RGB.",
        "Two models inside one method, one per direction (the official model translates one way).",
        "The number of patch-embedding convolutions (embed_down, 3 = 8x8 patches in the official "
        "model) and widths are parameters, so that small images keep at least a few tokens.",
        "Test-time style: the mean style code of the target modality's training slices "
        "(official translation draws a random style); the paired target is never used.",
        "PatchNCE heads are built at construction (the official code builds them at the first "
        "batch).",
    )
    defaults: ClassVar[dict[str, Any]] = {
        "ngf": 64,
        "n_down": 2,
        "style_dim": 8,
        "mlp_hidden": 256,
        "embed_dim": 1024,
        "embed_down": 3,  # patch side 2^embed_down on the content map (8)
        "depth": 6,
        "heads": 4,
        "dim_head": 256,
        "mlp_dim": 4096,
        "ndf": 64,
        "n_layers_d": 3,
        "nce_layers": [0, 4, 8],
        "num_patches": 256,
        "nce_nc": 256,
        "nce_tau": 0.07,
        "lambda_gan": 1.0,
        "lambda_recon": 10.0,
        "lambda_style": 10.0,
        "lambda_nce": 2.0,
        "lr": 2e-4,
        "beta1": 0.5,
        "beta2": 0.999,
        **STYLE_MEAN_DEFAULTS,
    }
    tiny_params: ClassVar[dict[str, Any]] = {
        "ngf": 4,
        "style_dim": 4,
        "mlp_hidden": 16,
        "embed_dim": 32,
        "embed_down": 1,
        "depth": 1,
        "heads": 2,
        "dim_head": 8,
        "mlp_dim": 32,
        "ndf": 4,
        "n_layers_d": 2,
        "num_patches": 16,
        "nce_nc": 16,
    }
    #: published batch 5, constant learning rate
    training_defaults: ClassVar[dict[str, Any]] = {"batch_size": 5, "lr_schedule": "constant"}
    #: the official recipe: batch 5, 200 epochs at a constant rate, the last weights
    recipes: ClassVar[dict[str, dict[str, Any]]] = {
        "official": {"batch_size": 5, "epochs": 200, "lr_schedule": "constant", "select": "last"},
    }

    def __init__(self, params: dict[str, Any] | None = None, image_size: int = 256) -> None:
        super().__init__(params, image_size)
        p = self.params
        if p["style_mode"] not in ("mean", "prior"):
            raise ValueError(
                f"method 'instaformer': style_mode must be 'mean' or 'prior', "
                f"got {p['style_mode']!r}"
            )
        self.nce_layers = [int(i) for i in p["nce_layers"]]
        for d in DIRECTIONS:
            src, dst = split_direction(d)
            gen = InstaFormerGenerator(
                image_size,
                1,
                int(p["ngf"]),
                int(p["n_down"]),
                int(p["style_dim"]),
                int(p["mlp_hidden"]),
                int(p["embed_dim"]),
                int(p["embed_down"]),
                int(p["depth"]),
                int(p["heads"]),
                int(p["dim_head"]),
                int(p["mlp_dim"]),
            )
            n_layers = len(gen.content_encoder.model)
            bad = [i for i in self.nce_layers if not 0 <= i < n_layers]
            if bad:
                raise ValueError(
                    f"method 'instaformer': nce_layers {bad} outside the content encoder's "
                    f"{n_layers} layers"
                )
            channels = [gen.content_encoder.layer_channels[i] for i in sorted(self.nce_layers)]
            setattr(self, f"G_{d}", gen)
            setattr(self, f"D_{dst}", PatchDiscriminator(1, int(p["ndf"]), int(p["n_layers_d"]),
                                                         norm="batch", antialias=True))  # fmt: skip
            setattr(self, f"F_{d}", PatchSampleMLP(channels, int(p["nce_nc"])))
        betas = (float(p["beta1"]), float(p["beta2"]))
        gens = [*self.G_a_to_b.parameters(), *self.G_b_to_a.parameters()]
        dis = [*self.D_b.parameters(), *self.D_a.parameters()]
        heads = [*self.F_a_to_b.parameters(), *self.F_b_to_a.parameters()]
        # one Adam per role over both directions: Adam is per parameter and the two directions
        # share no parameter, so this equals one optimiser per model
        self.opt_G = torch.optim.Adam(gens, lr=float(p["lr"]), betas=betas)
        self.opt_D = torch.optim.Adam(dis, lr=float(p["lr"]), betas=betas)
        self.opt_F = torch.optim.Adam(heads, lr=float(p["lr"]))
        sd = int(p["style_dim"])
        self.register_buffer("style_mean", torch.zeros(len(DIRECTIONS), sd))
        self.register_buffer("style_count", torch.zeros(()))

    # ----------------------------------------------------------------- contract
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D, "F": self.opt_F}

    def generator(self, direction: str) -> InstaFormerGenerator:
        split_direction(direction)
        return getattr(self, f"G_{direction}")

    # ----------------------------------------------------------------- training
    def _forward(self, direction: str, a: torch.Tensor, b: torch.Tensor) -> dict[str, Any]:
        gen = self.generator(direction)
        content_a, feats_a = gen.content(a, self.nce_layers)
        z = torch.randn(a.shape[0], gen.style_dim, device=a.device)
        fake = gen.decode(content_a, z)
        content_b, _ = gen.content(b)
        style_b = gen.style(b)
        recon = gen.decode(content_b, style_b)
        return {"fake": fake, "recon": recon, "style_b": style_b, "feats_a": feats_a}

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        p = self.params
        fw: dict[str, dict[str, Any]] = {}
        for d in DIRECTIONS:
            src, dst = split_direction(d)
            fw[d] = self._forward(d, batch[src], batch[dst])
        logs: dict[str, float] = {}

        # discriminators (LSGAN), fakes detached
        loss_d = torch.zeros((), device=batch["a"].device)
        for d in DIRECTIONS:
            _, dst = split_direction(d)
            disc = getattr(self, f"D_{dst}")
            fake_score = disc(fw[d]["fake"].detach())
            ld = 0.5 * (_lsgan(fake_score, False) + _lsgan(disc(batch[dst]), True))
            logs[f"D_{dst}"] = _f(ld)
            loss_d = loss_d + ld
        self.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_D.step()

        # generators and PatchNCE heads
        for d in DIRECTIONS:
            getattr(self, f"D_{split_direction(d)[1]}").requires_grad_(False)
        loss_g = torch.zeros((), device=batch["a"].device)
        n_patch, tau = int(p["num_patches"]), float(p["nce_tau"])
        for d in DIRECTIONS:
            _, dst = split_direction(d)
            gen, heads, f = self.generator(d), getattr(self, f"F_{d}"), fw[d]
            real_b = batch[dst]
            gan = _lsgan(getattr(self, f"D_{dst}")(f["fake"]), True)
            recon = (f["recon"] - real_b).abs().mean()
            style = (gen.style(f["recon"]) - f["style_b"]).abs().mean()
            _, feats_fake = gen.content(f["fake"], self.nce_layers)
            k, ids = heads(f["feats_a"], n_patch)
            q, _ = heads(feats_fake, n_patch, ids)
            bsz = real_b.shape[0]
            nce = sum(patch_nce_loss(qq, kk, bsz, tau) for qq, kk in zip(q, k, strict=True))
            nce = nce / len(q)
            loss_g = loss_g + (
                float(p["lambda_gan"]) * gan
                + float(p["lambda_recon"]) * recon
                + float(p["lambda_style"]) * style
                + float(p["lambda_nce"]) * nce
            )
            logs |= {f"G_gan_{d}": _f(gan), f"recon_{d}": _f(recon), f"style_{d}": _f(style),
                     f"nce_{d}": _f(nce)}  # fmt: skip
            self._update_running_style(d, f["style_b"])
        self.opt_G.zero_grad(set_to_none=True)
        self.opt_F.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()
        self.opt_F.step()
        for d in DIRECTIONS:
            getattr(self, f"D_{split_direction(d)[1]}").requires_grad_(True)
        logs["G"] = _f(loss_g)
        return logs

    # ------------------------------------------------------------ test-time style
    @torch.no_grad()
    def _update_running_style(self, direction: str, codes: torch.Tensor) -> None:
        """Running mean of the target-domain style codes, used until prepare_inference."""
        i = DIRECTIONS.index(direction)
        if i == 0:
            self.style_count += 1
        w = max(1.0 / float(self.style_count), float(self.params["style_running_momentum"]))
        self.style_mean[i].lerp_(codes.detach().float().mean(0), w)

    @torch.no_grad()
    def prepare_inference(self, slices: Iterator[dict[str, torch.Tensor]]) -> None:
        """Mean style code of each direction's target modality over the training slices."""

        def codes(batch: dict[str, torch.Tensor]) -> Iterator[torch.Tensor]:
            for d in DIRECTIONS:
                _, dst = split_direction(d)
                yield self.generator(d).style(batch[dst].to(self.device))

        max_slices = int(self.params["style_mean_max_slices"])
        mean_style_codes(self, slices, codes, self.style_mean, max_slices, self.plugin_name)

    def target_style(self, direction: str, batch_size: int) -> torch.Tensor:
        """The style code used at test time (never computed from the target image)."""
        i = DIRECTIONS.index(direction)
        if self.params["style_mode"] == "prior":
            return torch.randn(batch_size, self.style_mean.shape[1], device=self.device)
        return self.style_mean[i][None].expand(batch_size, -1)

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        gen = self.generator(direction)
        x = x.to(self.device)
        content, _ = gen.content(x)
        style = self.target_style(direction, x.shape[0]).to(x.dtype)
        return gen.decode(content, style).clamp(-1, 1)
