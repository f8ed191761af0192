"""SynDiff (Ozbey et al., IEEE TMI 2023): unsupervised translation with adversarial diffusion.

Two parts, trained jointly on unpaired slices of the two domains ``a`` and ``b`` (e.g. T1 and
T2):

- **Diffusive part.** For each target contrast, a few-step (``T = 4``) adversarial diffusion
  model (:mod:`mrbench_methods.nets.adversarial_diffusion`). Its generator, an NCSN++ U-Net with
  adaptive group norm (:mod:`mrbench_methods.nets.ncsnpp`), sees ``[x_{t+1}, y]`` (the noisy
  target and an image of the *other* contrast), the timestep and a latent ``z``, and predicts
  ``x0``; the reverse step draws ``x_t`` from ``q(x_t | x_{t+1}, x0_hat)``. A time-conditioned
  discriminator (:mod:`mrbench_methods.nets.time_discriminator`) judges ``(x_t, x_{t+1})``.
- **Non-diffusive part.** Two ResNet generators with 6 residual blocks (one per direction) and
  two 70x70 PatchGAN discriminators, as in CycleGAN but with the non-saturating loss. Their
  cross-contrast estimates are the source images ``y`` of the diffusive generators during
  training, which is what makes the scheme trainable without pairs: the diffusive generator of
  domain a learns to recover a real a image from an estimated b image made from that same image
  (cycle consistency through the diffusion). At test time the real source image takes their place.

One iteration (:meth:`SynDiff.train_step`), in the reference order:

1. diffusive discriminators: ``softplus(-D(x_t, t, x_{t+1}))`` on real pairs from ``q``,
   ``softplus(D(x_t', t, x_{t+1}))`` on pairs whose ``x_t'`` comes from the generator's ``x0``
   estimate; plus the R1 penalty ``gamma/2 E||grad_{x_t} D||^2`` on real pairs every
   ``r1_every`` steps;
2. cycle discriminators: ``softplus(-D(x))`` on real images, ``softplus(D(G(y)))`` on the
   non-diffusive estimates;
3. all four generators in one backward pass:
   ``lambda_cycle * L1_cycle + L_adv(diffusive) + L_adv(cycle) + lambda_l1 * L1(x0_hat, x0)``.

The diffusive generators' weights are averaged (EMA 0.999) for evaluation. Adam(0.5, 0.9) with
``lr_g`` 1.6e-4 for generators and ``lr_d`` 1e-4 for discriminators, cosine-annealed to 1e-5
(the trainer's ``cosine`` schedule, suggested in :attr:`SynDiff.training_defaults`).

Translation: start from ``N(0, I)`` and make ``T`` calls of the diffusive generator of the target
contrast, conditioned on the source image, with a fresh ``z`` at each step and no noise at the
last. The result depends on torch's global random state (deterministic under a fixed seed).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mrbench_methods.base import TranslationMethod, register, split_direction
from mrbench_methods.nets.adversarial_diffusion import AdversarialDiffusion
from mrbench_methods.nets.init import init_weights
from mrbench_methods.nets.losses import R1Penalty, d_loss_fake, d_loss_real, g_loss_nonsaturating
from mrbench_methods.nets.ncsnpp import NCSNpp
from mrbench_methods.nets.patchgan import PatchDiscriminator
from mrbench_methods.nets.resnet import ResnetGenerator
from mrbench_methods.nets.time_discriminator import TimeDiscriminator

#: SynDiff's diffusion process (``T = 4`` steps) and the size of its diffusive generators' NCSN++;
#: DisDiff's adversarial diffusion module takes these from here, as the two constants below
DIFFUSION_DEFAULTS: dict[str, Any] = {
    "num_steps": 4,
    "beta_min": 0.1,
    "beta_max": 20.0,
    "unet_ch": 64,
    "unet_mult": [1, 1, 2, 2, 4, 4],
    "unet_res_blocks": 2,
    "unet_attn": [16],
}
#: the latent code ``z`` of the diffusive generators
LATENT_DEFAULTS: dict[str, Any] = {"nz": 100, "z_emb_dim": 256, "n_mlp": 3}
#: the diffusive (time-conditioned) discriminators
TIME_DISCRIMINATOR_DEFAULTS: dict[str, Any] = {"tdis_ch": 64, "tdis_t_emb": 256, "tdis_down": 6}


def _set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        net.requires_grad_(flag)


@register("syndiff")
class SynDiff(TranslationMethod):
    display_name = "SynDiff"
    citation = "Özbey et al., IEEE TMI 2023"
    family = "diffusion"
    seconds_per_image_256 = 0.30
    defaults: ClassVar[dict[str, Any]] = {
        # diffusion process and diffusive generators (NCSN++ with adaptive group norm)
        **DIFFUSION_DEFAULTS,
        "unet_dropout": 0.0,
        "fir_kernel": [1, 3, 3, 1],
        **LATENT_DEFAULTS,
        # diffusive (time-conditioned) discriminators
        **TIME_DISCRIMINATOR_DEFAULTS,
        # non-diffusive part: ResNet generators and PatchGAN discriminators
        "ngf_cycle": 64,
        "n_blocks_cycle": 6,
        "ndf_cycle": 64,
        "n_layers_cycle": 3,
        "init_gain_cycle": 0.02,
        # losses
        "lambda_l1": 0.5,
        "lambda_cycle": 0.5,
        "r1_gamma": 1.0,
        "r1_every": 10,
        # optimisers
        "lr_g": 1.6e-4,
        "lr_d": 1e-4,
        "beta1": 0.5,
        "beta2": 0.9,
    }
    tiny_params: ClassVar[dict[str, Any]] = {
        "unet_ch": 8,
        "unet_mult": [1, 2, 2],
        "unet_res_blocks": 1,
        "z_emb_dim": 32,
        "n_mlp": 1,
        "tdis_ch": 8,
        "tdis_t_emb": 32,
        "tdis_down": 3,
        "ngf_cycle": 8,
        "n_blocks_cycle": 2,
        "ndf_cycle": 8,
        "n_layers_cycle": 2,
    }
    optimizer = "Adam"
    deviations = (
        "One-channel output of the diffusive generator (the official network outputs as many "
        "channels as it takes).",
        "Initialisation by variance scaling with fan average; the official code, though its "
        "initialiser is named fan_avg, scales by fan_out in practice.",
        "Cosine annealing per step over the run (the official code anneals per epoch).",
        "Checkpoint chosen by the best paired-validation PSNR; the official code leaves the "
        "epoch to the user (--which_epoch).",
    )
    #: the published command: batch 1, 500 epochs, cosine annealing to 1e-5, EMA 0.999
    recipes: ClassVar[dict[str, dict[str, Any]]] = {
        "official": {
            "batch_size": 1,
            "epochs": 500,
            "lr_schedule": "cosine",
            "lr_min": 1e-5,
            "ema_decay": 0.999,
            "select": "best",
        },
    }
    #: names before the shared vocabulary of the NCSN++ and time-discriminator networks
    aliases: ClassVar[dict[str, str]] = {
        "nf": "unet_ch",
        "ch_mult": "unet_mult",
        "num_res_blocks": "unet_res_blocks",
        "attn_resolutions": "unet_attn",
        "dropout": "unet_dropout",
        "ngf_d": "tdis_ch",
        "t_emb_dim": "tdis_t_emb",
        "d_n_down": "tdis_down",
        "lazy_reg": "r1_every",
        "num_timesteps": "num_steps",
    }
    #: the reference recipe: cosine annealing to 1e-5 and an EMA of the generators
    training_defaults: ClassVar[dict[str, Any]] = {
        "lr_schedule": "cosine",
        "lr_min": 1e-5,
        "ema_decay": 0.999,
    }

    def __init__(self, params: dict[str, Any] | None = None, image_size: int = 256) -> None:
        super().__init__(params, image_size)
        p = self.params
        ch_mult = [int(m) for m in p["unet_mult"]]
        if not ch_mult:
            raise ValueError("syndiff: unet_mult must list at least one multiplier")
        if image_size % 2 ** (len(ch_mult) - 1):
            raise ValueError(
                f"syndiff: image_size {image_size} is not divisible by 2^{len(ch_mult) - 1} "
                f"(unet_mult has {len(ch_mult)} levels)"
            )
        n_down = int(p["tdis_down"])
        if n_down < 1 or image_size % 2**n_down or image_size // 2**n_down < 2:
            raise ValueError(
                f"syndiff: tdis_down={n_down} does not suit image_size {image_size} "
                "(need image_size / 2^tdis_down to be an integer >= 2)"
            )
        if image_size % 4:
            raise ValueError(f"syndiff: image_size must be a multiple of 4, got {image_size}")
        if int(p["r1_every"]) < 1:
            raise ValueError(f"syndiff: r1_every must be >= 1, got {p['r1_every']}")
        self.nz = int(p["nz"])
        if self.nz < 1:
            raise ValueError(f"syndiff: nz must be >= 1, got {self.nz}")

        self.diffusion = AdversarialDiffusion(
            int(p["num_steps"]), float(p["beta_min"]), float(p["beta_max"])
        )

        def diffusive_generator() -> NCSNpp:
            return NCSNpp(
                in_ch=2,
                out_ch=1,
                image_size=image_size,
                nf=int(p["unet_ch"]),
                ch_mult=ch_mult,
                num_res_blocks=int(p["unet_res_blocks"]),
                attn_resolutions=[int(r) for r in p["unet_attn"]],
                dropout=float(p["unet_dropout"]),
                fir_taps=[float(k) for k in p["fir_kernel"]],
                nz=self.nz,
                z_emb_dim=int(p["z_emb_dim"]),
                n_mlp=int(p["n_mlp"]),
            )

        def diffusive_discriminator() -> TimeDiscriminator:
            return TimeDiscriminator(
                in_ch=2,
                ngf=int(p["tdis_ch"]),
                t_emb_dim=int(p["tdis_t_emb"]),
                n_down=n_down,
                fir_taps=[float(k) for k in p["fir_kernel"]],
            )

        gain = float(p["init_gain_cycle"])

        def cycle_generator() -> ResnetGenerator:
            net = ResnetGenerator(1, 1, int(p["ngf_cycle"]), int(p["n_blocks_cycle"]))
            return init_weights(net, gain)

        def cycle_discriminator() -> PatchDiscriminator:
            net = PatchDiscriminator(1, int(p["ndf_cycle"]), int(p["n_layers_cycle"]))
            return init_weights(net, gain)

        # diffusive generators, named by the translation they perform at test time:
        # diff_b_to_a produces a from [x_{t+1} of a, an image of b contrast]
        self.diff_a_to_b = diffusive_generator()
        self.diff_b_to_a = diffusive_generator()
        self.disc_diff_a = diffusive_discriminator()  # judges the a chain
        self.disc_diff_b = diffusive_discriminator()
        self.cyc_a_to_b = cycle_generator()
        self.cyc_b_to_a = cycle_generator()
        self.disc_cyc_a = cycle_discriminator()  # judges a images
        self.disc_cyc_b = cycle_discriminator()

        betas = (float(p["beta1"]), float(p["beta2"]))

        def adam(nets: list[nn.Module], lr: float) -> torch.optim.Adam:
            params = [q for net in nets for q in net.parameters()]
            return torch.optim.Adam(params, lr=lr, betas=betas)

        lr_g, lr_d = float(p["lr_g"]), float(p["lr_d"])
        self.opt_G_diff = adam([self.diff_a_to_b, self.diff_b_to_a], lr_g)
        self.opt_G_cyc = adam([self.cyc_a_to_b, self.cyc_b_to_a], lr_g)
        self.opt_D_diff = adam([self.disc_diff_a, self.disc_diff_b], lr_d)
        self.opt_D_cyc = adam([self.disc_cyc_a, self.disc_cyc_b], lr_d)
        self.r1 = R1Penalty(float(p["r1_gamma"]), int(p["r1_every"]))

    # ---------------------------------------------------------------- training
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "G_diff": self.opt_G_diff,
            "G_cyc": self.opt_G_cyc,
            "D_diff": self.opt_D_diff,
            "D_cyc": self.opt_D_cyc,
        }

    def ema_modules(self) -> dict[str, nn.Module]:
        return {"diff_a_to_b": self.diff_a_to_b, "diff_b_to_a": self.diff_b_to_a}

    def _latent(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.randn(batch, self.nz, device=device)

    def _fake_step(
        self, gen: NCSNpp, x_tp1: torch.Tensor, t: torch.Tensor, source: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x0_hat = G([x_{t+1}, source], t, z)`` and ``x_t' ~ q(x_t | x_{t+1}, x0_hat)``."""
        x0_hat = gen(
            torch.cat([x_tp1, source], dim=1), t, self._latent(x_tp1.shape[0], x_tp1.device)
        )
        return x0_hat, self.diffusion.sample_posterior(x0_hat, x_tp1, t)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        real1, real2 = batch["a"], batch["b"]
        n1, n2 = real1.shape[0], real2.shape[0]
        diff = self.diffusion
        d_diff = [self.disc_diff_a, self.disc_diff_b]
        d_cyc = [self.disc_cyc_a, self.disc_cyc_b]
        out: dict[str, float] = {}

        # 1. diffusive discriminators ------------------------------------------------
        _set_requires_grad(d_diff + d_cyc, True)
        self.opt_D_diff.zero_grad(set_to_none=True)
        t1 = diff.sample_timesteps(n1, real1.device)
        t2 = diff.sample_timesteps(n2, real2.device)
        x1_t, x1_tp1 = diff.q_sample_pairs(real1, t1)
        x2_t, x2_tp1 = diff.q_sample_pairs(real2, t2)
        x1_t.requires_grad_(True)
        x2_t.requires_grad_(True)
        d1_real = self.disc_diff_a(x1_t, t1, x1_tp1)
        d2_real = self.disc_diff_b(x2_t, t2, x2_tp1)
        loss_real = d_loss_real(d1_real) + d_loss_real(d2_real)
        loss_d = loss_real
        if self.r1.due(step):
            r1 = self.r1(d1_real, x1_t) + self.r1(d2_real, x2_t)
            loss_d = loss_d + r1
            out["r1"] = float(r1.detach())
        # The non-diffusive estimates are computed once, with their graph, and shared by all
        # three updates: the discriminator updates see them detached, and the cycle generators
        # do not change before the generator update that backpropagates through them.
        est1_g = self.cyc_b_to_a(real2)  # a estimated from the real b
        est2_g = self.cyc_a_to_b(real1)  # b estimated from the real a
        est1, est2 = est1_g.detach(), est2_g.detach()
        with torch.no_grad():
            _, x1_fake = self._fake_step(self.diff_b_to_a, x1_tp1, t1, est2)
            _, x2_fake = self._fake_step(self.diff_a_to_b, x2_tp1, t2, est1)
        loss_fake = d_loss_fake(self.disc_diff_a(x1_fake, t1, x1_tp1)) + d_loss_fake(
            self.disc_diff_b(x2_fake, t2, x2_tp1)
        )
        loss_d = loss_d + loss_fake
        loss_d.backward()
        self.opt_D_diff.step()
        out["D_diff"] = float((loss_real + loss_fake).detach())

        # 2. cycle (non-diffusive) discriminators --------------------------------------
        self.opt_D_cyc.zero_grad(set_to_none=True)
        loss_dc = (
            d_loss_real(self.disc_cyc_a(real1))
            + d_loss_real(self.disc_cyc_b(real2))
            + d_loss_fake(self.disc_cyc_a(est1))
            + d_loss_fake(self.disc_cyc_b(est2))
        )
        loss_dc.backward()
        self.opt_D_cyc.step()
        out["D_cyc"] = float(loss_dc.detach())

        # 3. all generators ------------------------------------------------------------
        _set_requires_grad(d_diff + d_cyc, False)
        self.opt_G_diff.zero_grad(set_to_none=True)
        self.opt_G_cyc.zero_grad(set_to_none=True)
        t1 = diff.sample_timesteps(n1, real1.device)
        t2 = diff.sample_timesteps(n2, real2.device)
        with torch.no_grad():
            _, x1_tp1 = diff.q_sample_pairs(real1, t1)
            _, x2_tp1 = diff.q_sample_pairs(real2, t2)
        est1, est2 = est1_g, est2_g
        rec2 = self.cyc_a_to_b(est1)
        rec1 = self.cyc_b_to_a(est2)
        x1_0, x1_fake = self._fake_step(self.diff_b_to_a, x1_tp1, t1, est2)
        x2_0, x2_fake = self._fake_step(self.diff_a_to_b, x2_tp1, t2, est1)
        adv = g_loss_nonsaturating(self.disc_diff_a(x1_fake, t1, x1_tp1)) + g_loss_nonsaturating(
            self.disc_diff_b(x2_fake, t2, x2_tp1)
        )
        adv_cyc = g_loss_nonsaturating(self.disc_cyc_a(est1)) + g_loss_nonsaturating(
            self.disc_cyc_b(est2)
        )
        l1_x0 = F.l1_loss(x1_0.float(), real1.float()) + F.l1_loss(x2_0.float(), real2.float())
        cycle = F.l1_loss(rec1.float(), real1.float()) + F.l1_loss(rec2.float(), real2.float())
        loss_g = (
            float(self.params["lambda_cycle"]) * cycle
            + adv
            + adv_cyc
            + float(self.params["lambda_l1"]) * l1_x0
        )
        loss_g.backward()
        self.opt_G_diff.step()
        self.opt_G_cyc.step()
        _set_requires_grad(d_diff + d_cyc, True)

        out |= {
            "G": float(loss_g.detach()),
            "G_adv_diff": float(adv.detach()),
            "G_adv_cyc": float(adv_cyc.detach()),
            "L1_x0": float(l1_x0.detach()),
            "L1_cycle": float(cycle.detach()),
        }
        return out

    # ------------------------------------------------------------- translation
    @property
    def sampling_steps(self) -> int:
        """Generator calls per translation: one per diffusion step."""
        return int(self.params["num_steps"])

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        src, _ = split_direction(direction)
        gen = self.diff_a_to_b if src == "a" else self.diff_b_to_a

        def predict_x0(x_tp1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            z = self._latent(x.shape[0], x.device)
            return gen(torch.cat([x_tp1.to(x.dtype), x], dim=1), t, z)

        out = self.diffusion.sample(predict_x0, x.shape, device=x.device)
        return out.float().clamp(-1, 1)
