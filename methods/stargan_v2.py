"""StarGAN-v2 (Choi et al., CVPR 2020) with two domains, the pair's ``a`` (0) and ``b`` (1).

Networks (:mod:`mrbench_methods.nets.stargan`): a generator ``G(x, s)`` whose AdaIN decoder is
driven by
a 64-d style ``s``; a mapping network ``F(z, y)`` from a 16-d latent to the style of domain
``y``; a style encoder ``E(x, y)``; a discriminator ``D(x, y)`` with one logit per domain. The
AFHQ setting without the face-landmark high-pass skips (``w_hpf = 0``), one channel in and out.

One training step follows the official solver, in its order:

1. D, latent-guided: ``BCE(D(x, y_org), 1) + BCE(D(G(x, F(z, y_trg)), y_trg), 0) + lambda_reg *
   R1(x)`` (R1: ``0.5 * mean ||grad_x D(x, y_org)||^2``); Adam step on D.
2. D, reference-guided: the same with ``s = E(x_ref, y_trg)``; Adam step on D.
3. G, latent-guided: ``BCE(D(G(x, s), y_trg), 1) + lambda_sty |E(G(x, s), y_trg) - s|
   - lambda_ds |G(x, s) - G(x, s2)| + lambda_cyc |G(G(x, s), E(x, y_org)) - x|`` with
   ``s, s2 = F(z, y_trg), F(z2, y_trg)`` (the second image detached); Adam steps on G, F and E.
4. G, reference-guided: the same with ``s, s2 = E(x_ref, y_trg), E(x_ref2, y_trg)``; Adam step
   on G only.

The diversity weight decays linearly from ``lambda_ds`` to 0 over ``ds_iter`` steps (a pure
function of the step, so resuming is exact). Adam lr 1e-4 (mapping network 1e-6), betas
(0, 0.99), weight decay 1e-4 for all four networks; the trainer keeps the 0.999 EMA of G, F and
E (:meth:`ema_modules`, ``ema_decay`` in :attr:`StarGANv2.training_defaults`).

Batches: the trainer gives ``batch_size`` ``a`` and ``batch_size`` ``b`` slices (unpaired). The
sources are the first half of each (``batch_size`` images, both domains equally often, like the
official balanced source loader); each source gets a target domain drawn at random (the
official reference loader draws it independently of the source, so half of the targets are the
source's own domain) or, with ``target: other``, the other domain; its two references
``x_ref``, ``x_ref2`` are two different random images of that domain from the batch.

Test time: the style of the target modality is the MEAN style code ``E(x, y)`` of its training
slices, computed in :meth:`prepare_inference` into buffers (until then a running mean of the
codes seen in training is used, so validation works); ``style_mode: prior`` maps a fresh
``z ~ N(0, I)`` through the mapping network instead. The paired target image is never read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from mrbench.pairs import DOMAINS
from mrbench_methods.base import TranslationMethod, register, split_direction
from mrbench_methods.nets.adain import STYLE_MEAN_DEFAULTS, mean_style_codes
from mrbench_methods.nets.losses import d_loss_fake, d_loss_real, g_loss_nonsaturating, r1_penalty
from mrbench_methods.nets.stargan import (
    Discriminator,
    Generator,
    MappingNetwork,
    StyleEncoder,
    he_init,
)


def _f(value: torch.Tensor) -> float:
    return float(value.detach())


@register("stargan_v2")
class StarGANv2(TranslationMethod):
    display_name = "StarGAN-v2"
    citation = "Choi et al., CVPR 2020"
    family = "style-based gan"
    #: sources are half a, half b, two different references each: data-parallel shares of an
    #: even size >= 2
    rank_batch_multiple = 2
    deviations = (
        "One-channel (grayscale) input and output: the official code hard-codes 3 channels in "
        "four convolutions (generator stem and output, style encoder and discriminator stems).",
        "Two domains (the two contrasts of a pair, e.g. T1w and T2w) instead of the datasets' 2-3 "
        "image classes.",
        "w_hpf = 0 (the AFHQ setting): no face-landmark network and no high-pass skips.",
        "Diversity weight 2 (the AFHQ setting of the published scripts; CelebA-HQ uses 1), "
        "decaying linearly to 0 over ds_iter steps.",
        "Base width is a parameter (64 at 256 px, the official value) instead of the official "
        "2^14 / image_size, so small images can use small networks.",
        "Sources and references come from the trainer's unpaired two-contrast batch (half of "
        "each as sources, references drawn from the batch) instead of separate "
        "source/reference loaders.",
        "The EMA copies start from the He-initialised weights (the official EMA networks keep "
        "PyTorch's default initialisation until the first update).",
        "Test-time style: the mean style code of the target modality's training slices "
        "(official evaluation uses random latents or reference images); the paired target is "
        "never used.",
    )
    defaults: ClassVar[dict[str, Any]] = {
        "dim": 64,  # base width (official: 2^14 / image_size, i.e. 64 at 256 px)
        "max_dim": 512,
        "style_dim": 64,
        "latent_dim": 16,
        "mapping_hidden": 512,
        "n_bottleneck": 2,
        "lambda_reg": 1.0,  # R1 gamma
        "lambda_sty": 1.0,
        "lambda_ds": 2.0,  # AFHQ (1 for CelebA-HQ)
        "lambda_cyc": 1.0,
        "ds_iter": 100000,
        "lr": 1e-4,
        "f_lr": 1e-6,  # mapping network
        "beta1": 0.0,
        "beta2": 0.99,
        "weight_decay": 1e-4,
        "target": "random",  # target domain per source: "random" (official) or "other"
        **STYLE_MEAN_DEFAULTS,
    }
    tiny_params: ClassVar[dict[str, Any]] = {
        "dim": 8,
        "max_dim": 16,
        "style_dim": 8,
        "latent_dim": 4,
        "mapping_hidden": 16,
        "n_bottleneck": 1,
        "ds_iter": 10,
    }
    #: published batch 8 (source images per step), EMA 0.999, constant learning rate
    training_defaults: ClassVar[dict[str, Any]] = {
        "batch_size": 8,
        "ema_decay": 0.999,
        "lr_schedule": "constant",
    }
    #: the official recipe (``main.py`` defaults for AFHQ): batch 8, 100k iterations at a constant
    #: rate, EMA 0.999, the last (EMA) weights; the official loader's augmentation of sources
    #: and references (a random resized crop with p 0.5, scale 0.8-1.0, and a random flip)
    recipes: ClassVar[dict[str, dict[str, Any]]] = {
        "official": {
            "batch_size": 8,
            "steps": 100_000,
            "ema_decay": 0.999,
            "lr_schedule": "constant",
            "augment": "random_resized_crop_flip",
            "select": "last",
        },
    }

    def __init__(self, params: dict[str, Any] | None = None, image_size: int = 256) -> None:
        super().__init__(params, image_size)
        p = self.params
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(
                f"method 'stargan_v2': image_size must be a power of 2 >= 8, got {image_size}"
            )
        for key, allowed in (("target", ("random", "other")), ("style_mode", ("mean", "prior"))):
            if p[key] not in allowed:
                raise ValueError(
                    f"method 'stargan_v2': {key} must be one of {allowed}, got {p[key]!r}"
                )
        dim, max_dim, sd = int(p["dim"]), int(p["max_dim"]), int(p["style_dim"])
        self.generator = he_init(Generator(image_size, 1, dim, max_dim, sd, int(p["n_bottleneck"])))
        self.mapping_network = he_init(
            MappingNetwork(int(p["latent_dim"]), sd, len(DOMAINS), int(p["mapping_hidden"]))
        )
        self.style_encoder = he_init(StyleEncoder(image_size, 1, dim, max_dim, sd, len(DOMAINS)))
        self.discriminator = he_init(Discriminator(image_size, 1, dim, max_dim, len(DOMAINS)))
        betas = (float(p["beta1"]), float(p["beta2"]))
        wd = float(p["weight_decay"])

        def adam(net: nn.Module, lr: float) -> torch.optim.Adam:
            return torch.optim.Adam(net.parameters(), lr=lr, betas=betas, weight_decay=wd)

        self.opt_G = adam(self.generator, float(p["lr"]))
        self.opt_F = adam(self.mapping_network, float(p["f_lr"]))
        self.opt_E = adam(self.style_encoder, float(p["lr"]))
        self.opt_D = adam(self.discriminator, float(p["lr"]))
        # test-time styles per domain (outside the EMA modules: the trainer must not average them)
        self.register_buffer("style_mean", torch.zeros(len(DOMAINS), sd))
        self.register_buffer("style_count", torch.zeros(()))

    # ----------------------------------------------------------------- contract
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_G, "mapping": self.opt_F, "style": self.opt_E,
                "discriminator": self.opt_D}  # fmt: skip

    def ema_modules(self) -> dict[str, nn.Module]:
        return {
            "generator": self.generator,
            "mapping_network": self.mapping_network,
            "style_encoder": self.style_encoder,
        }

    def lambda_ds_at(self, step: int) -> float:
        """Diversity weight at ``step``: linear decay from ``lambda_ds`` to 0 over ``ds_iter``."""
        p = self.params
        ds_iter = int(p["ds_iter"])
        frac = 1.0 - step / ds_iter if ds_iter > 0 else 0.0
        return float(p["lambda_ds"]) * max(0.0, frac)

    # ----------------------------------------------------------------- training
    def _inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sources, their domains, target domains, two references per source and two latents."""
        xa, xb = batch["a"], batch["b"]
        b = xa.shape[0]
        n1, n2 = (b + 1) // 2, max(1, b // 2)
        x_real = torch.cat([xa[:n1], xb[:n2]])
        dev = x_real.device
        y_org = torch.cat([torch.zeros(n1, dtype=torch.long), torch.ones(n2, dtype=torch.long)])
        y_org = y_org.to(dev)
        n = x_real.shape[0]
        if self.params["target"] == "other":
            y_trg = 1 - y_org
        else:
            y_trg = torch.randint(0, len(DOMAINS), (n,), device=dev)
        pools = torch.stack([xa, xb])  # (2, B, 1, H, W)
        i1 = torch.randint(0, b, (n,), device=dev)
        shift = torch.randint(1, b, (n,), device=dev) if b > 1 else torch.zeros_like(i1)
        i2 = (i1 + shift) % b
        ld = int(self.params["latent_dim"])
        return {
            "x_real": x_real,
            "y_org": y_org,
            "y_trg": y_trg,
            "x_ref": pools[y_trg, i1],
            "x_ref2": pools[y_trg, i2],
            "z_trg": torch.randn(n, ld, device=dev),
            "z_trg2": torch.randn(n, ld, device=dev),
        }

    def _d_loss(
        self, inp: dict[str, torch.Tensor], latent: bool
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x_real = inp["x_real"].detach().requires_grad_(True)
        out = self.discriminator(x_real, inp["y_org"])
        loss_real = d_loss_real(out)
        loss_reg = r1_penalty(out, x_real, gamma=1.0)  # 0.5 * E||grad||^2, weighted below
        with torch.no_grad():
            if latent:
                s_trg = self.mapping_network(inp["z_trg"], inp["y_trg"])
            else:
                s_trg = self.style_encoder(inp["x_ref"], inp["y_trg"])
            x_fake = self.generator(inp["x_real"], s_trg)
        loss_fake = d_loss_fake(self.discriminator(x_fake, inp["y_trg"]))
        loss = loss_real + loss_fake + float(self.params["lambda_reg"]) * loss_reg
        return loss, {"real": _f(loss_real), "fake": _f(loss_fake), "reg": _f(loss_reg)}

    def _g_loss(
        self, inp: dict[str, torch.Tensor], latent: bool, lambda_ds: float
    ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        p = self.params
        x_real, y_org, y_trg = inp["x_real"], inp["y_org"], inp["y_trg"]
        if latent:
            s_trg = self.mapping_network(inp["z_trg"], y_trg)
            s_trg2 = self.mapping_network(inp["z_trg2"], y_trg)
        else:
            s_trg = self.style_encoder(inp["x_ref"], y_trg)
            s_trg2 = self.style_encoder(inp["x_ref2"], y_trg)
        x_fake = self.generator(x_real, s_trg)
        loss_adv = g_loss_nonsaturating(self.discriminator(x_fake, y_trg))
        loss_sty = (self.style_encoder(x_fake, y_trg) - s_trg).abs().mean()
        x_fake2 = self.generator(x_real, s_trg2).detach()
        loss_ds = (x_fake - x_fake2).abs().mean()
        s_org = self.style_encoder(x_real, y_org)
        loss_cyc = (self.generator(x_fake, s_org) - x_real).abs().mean()
        loss = (
            loss_adv
            + float(p["lambda_sty"]) * loss_sty
            - lambda_ds * loss_ds
            + float(p["lambda_cyc"]) * loss_cyc
        )
        logs = {"adv": _f(loss_adv), "sty": _f(loss_sty), "ds": _f(loss_ds), "cyc": _f(loss_cyc)}
        return loss, logs, s_org.detach()

    def _zero_grad(self) -> None:
        for opt in self.optimizers().values():
            opt.zero_grad(set_to_none=True)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        inp = self._inputs(batch)
        lam_ds = self.lambda_ds_at(step)
        logs: dict[str, float] = {}
        # discriminator: latent-guided, then reference-guided
        for tag, latent in (("latent", True), ("ref", False)):
            loss, parts = self._d_loss(inp, latent)
            self._zero_grad()
            loss.backward()
            self.opt_D.step()
            logs |= {f"D_{tag}_{k}": v for k, v in parts.items()}
        # generator: latent-guided (G, F, E step), then reference-guided (G steps)
        self.discriminator.requires_grad_(False)
        loss, parts, s_org = self._g_loss(inp, True, lam_ds)
        self._zero_grad()
        loss.backward()
        self.opt_G.step()
        self.opt_F.step()
        self.opt_E.step()
        logs |= {f"G_latent_{k}": v for k, v in parts.items()}
        loss, parts, _ = self._g_loss(inp, False, lam_ds)
        self._zero_grad()
        loss.backward()
        self.opt_G.step()
        logs |= {f"G_ref_{k}": v for k, v in parts.items()}
        self.discriminator.requires_grad_(True)
        logs["lambda_ds"] = lam_ds
        self._update_running_style(s_org, inp["y_org"])
        return logs

    # ------------------------------------------------------------ test-time style
    @torch.no_grad()
    def _update_running_style(self, s: torch.Tensor, y: torch.Tensor) -> None:
        """Running mean of the style codes of real images, used until prepare_inference."""
        self.style_count += 1
        w = max(1.0 / float(self.style_count), float(self.params["style_running_momentum"]))
        for d in range(len(DOMAINS)):
            sel = s[y == d]
            if len(sel):
                self.style_mean[d].lerp_(sel.float().mean(0), w)

    @torch.no_grad()
    def prepare_inference(self, slices: Iterator[dict[str, torch.Tensor]]) -> None:
        """Mean style code ``E(x, y)`` of each modality over the training slices."""

        def codes(batch: dict[str, torch.Tensor]) -> Iterator[torch.Tensor]:
            for d, m in enumerate(DOMAINS):
                x = batch[m].to(self.device)
                y = torch.full((x.shape[0],), d, dtype=torch.long, device=x.device)
                yield self.style_encoder(x, y)

        max_slices = int(self.params["style_mean_max_slices"])
        mean_style_codes(self, slices, codes, self.style_mean, max_slices, self.plugin_name)

    def target_style(self, modality: str, batch_size: int) -> torch.Tensor:
        """The style code of the target modality used at test time (never from the target)."""
        d = DOMAINS.index(modality)
        if self.params["style_mode"] == "prior":
            z = torch.randn(batch_size, int(self.params["latent_dim"]), device=self.device)
            y = torch.full((batch_size,), d, dtype=torch.long, device=self.device)
            return self.mapping_network(z, y)
        return self.style_mean[d][None].expand(batch_size, -1)

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        _, dst = split_direction(direction)
        x = x.to(self.device)
        s = self.target_style(dst, x.shape[0]).to(x.dtype)
        return self.generator(x, s).clamp(-1, 1)
