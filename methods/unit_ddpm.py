"""UNIT-DDPM (Sasaki, Willcocks & Breckon 2021, arXiv:2104.05358): unpaired translation with two
conditional denoising diffusion models and no adversarial loss.

Model. One DDPM per modality. The reverse transitions are conditioned on the *noisy* image of the
other modality at the same step: ``p_thetaA(x^A_{t-1} | x^A_t, x~^B_t)`` and
``p_thetaB(x^B_{t-1} | x^B_t, x~^A_t)``; each denoiser is a DDPM U-Net
(``mrbench_methods.nets.ddpm_unet``)
that takes ``[x_t, condition_t]`` as two channels and predicts the noise of its own channel. Two
domain-translation networks ``g^A: B -> A`` and ``g^B: A -> B`` supply the missing partner of each
unpaired image, so that every training image ``x_0^A`` forms a pseudo-pair ``(x_0^A, g^B(x_0^A))``
and every ``x_0^B`` forms ``(g^A(x_0^B), x_0^B)``.

Training, one iteration (the paper's Algorithm 1, in this module's names):

1. draw ``x_0^A``, ``x_0^B`` (unpaired), one ``t ~ U{1..T}`` (per batch element, shared by
   both pseudo-pairs) and four noises ``eps^A, eps~^B`` (pair A) and ``eps^B, eps~^A`` (pair B);
2. translate: ``x~_0^B = g^B(x_0^A)``, ``x~_0^A = g^A(x_0^B)``; noise both members of each pair
   to that step: ``(x^A_t, x~^B_t)`` and ``(x~^A_t, x^B_t)``;
3. denoiser update (translators fixed): gradient step on
   ``|eps^A - eps_thetaA(x^A_t, x~^B_t, t)|^2 + |eps^B - eps_thetaB(x^B_t, x~^A_t, t)|^2``
   (the DDPM loss on *real* images, conditioned on noisy *translated* images);
4. translator update (denoisers fixed): gradient step on
   ``lambda_dsm * (|eps~^A - eps_thetaA(x~^A_t, x^B_t, t)|^2
   + |eps~^B - eps_thetaB(x~^B_t, x^A_t, t)|^2)
   + lambda_cyc * (|g^A(g^B(x_0^A)) - x_0^A|_1 + |g^B(g^A(x_0^B)) - x_0^B|_1)``:
   the translated images must be denoisable as images of their domain given the real partner,
   and the round trip must return the input. The same noisy pairs serve both updates.

Sampling A -> B (the paper's Algorithm 2): ``x^B_T ~ N(0, I)``; while ``t > t_r`` (the release
time) the source is re-noised to the current step,
``x~^A_t = sqrt(abar_t) x_0^A + sqrt(1 - abar_t) z``, and only the B chain is denoised,
``x^B_{t-1} ~ p_thetaB(. | x^B_t, x~^A_t)``; from ``t <= t_r`` on the A chain is released
(started from the last re-noised source) and both chains are denoised jointly, each
conditioned on the other's current state. The result is ``x^B_0``.

Choices the paper leaves open, made here (all are parameters in ``defaults``):

- Denoiser: DDPM's 256 px U-Net (``unet_ch=128``, ``unet_mult=(1,1,2,2,4,4)``, 2 residual
  blocks per level, attention at 16 px, dropout 0), 2 input channels ``[x_t, condition_t]``, one
  output channel (noise of ``x_t``); 113.67 M parameters each.
- Schedule: linear betas 1e-4..0.02, ``T = 1000``; the reverse variance is fixed to the
  posterior variance ``beta~_t``; the predicted ``x_0`` is clipped to [-1, 1] in each reverse step.
- Fast sampling: ``sample_steps`` evenly strided steps of the same process (improved-DDPM
  respacing, ancestral DDPM steps on the respaced betas); ``sample_steps = timesteps`` is the
  paper's full chain. ``release_time`` is given in original steps (``t_r`` of ``1..T``; 0 never
  releases the source, ``T`` denoises both chains from the start); default 100 (= 0.1 T).
- Translators: CycleGAN's ResNet generator (``mrbench_methods.nets.resnet``, ngf 64, 9 residual
  blocks,
  instance norm, tanh), N(0, 0.02) initialisation.
- Loss weights: ``lambda_dsm = 1``, ``lambda_cyc = 10`` (CycleGAN's cycle weight). The paper uses
  squared L2 norms for the noise and L1 norms for the cycle; here each is the per-pixel mean
  (DDPM's ``L_simple``), the norm divided by the same pixel count, so the weights balance the
  terms as in the paper.
  ``translator_dsm`` selects which noise-prediction terms drive the translators: ``"target"``
  (translated image is the denoised variable, step 4 above, default), ``"condition"`` (translated
  image as the condition, gradients of the step-3 loss reaching the translators) or ``"both"``.
- Optimisers: Adam for the denoisers with DDPM's 256 px settings (lr 2e-5, betas 0.9/0.999,
  gradient-norm clip 1.0; EMA 0.9999 of the denoisers is the trainer's); Adam(0.5, 0.999), lr
  2e-4 for the translators (CycleGAN), the same gradient-norm clip, no EMA (they take no part in
  sampling). Both updates run every iteration, denoisers first.
- Brain masks are not used by the losses (the method learns the background as well).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mrbench_methods.base import TranslationMethod, register, split_direction
from mrbench_methods.nets.ddpm_unet import DDPMUNet
from mrbench_methods.nets.gaussian_diffusion import GaussianDiffusion
from mrbench_methods.nets.init import init_weights
from mrbench_methods.nets.resnet import ResnetGenerator

_DSM_MODES = ("target", "condition", "both")


@register("unit_ddpm")
class UnitDDPM(TranslationMethod):
    display_name = "UNIT-DDPM"
    citation = "Sasaki et al., arXiv 2104.05358 (2021)"
    family = "diffusion"
    seconds_per_image_256 = 0.08
    #: 1,100 denoiser evaluations per slice (1,000 steps, two per step after the release at 100)
    #: of about 497 GFLOP each, at an assumed 50 TFLOP/s in float32: an estimate
    translate_seconds_per_image_256 = 11.0
    defaults: dict[str, Any] = {
        # diffusion
        "timesteps": 1000,
        "beta_start": 1e-4,
        "beta_end": 0.02,
        # denoisers (DDPM 256 px U-Net)
        "unet_ch": 128,
        "unet_mult": [1, 1, 2, 2, 4, 4],
        "unet_res_blocks": 2,
        "unet_attn": [16],
        "unet_dropout": 0.0,
        # domain-translation networks (CycleGAN ResNet generator)
        "translator_ngf": 64,
        "translator_blocks": 9,
        # losses
        "lambda_dsm": 1.0,
        "lambda_cyc": 10.0,
        "translator_dsm": "target",
        # optimisers
        "lr_denoiser": 2e-5,
        "betas_denoiser": [0.9, 0.999],
        "lr_translator": 2e-4,
        "betas_translator": [0.5, 0.999],
        "grad_clip": 1.0,
        # sampling
        "sample_steps": 1000,
        "release_time": 100,
        "clip_denoised": True,
    }
    optimizer = "Adam"
    deviations = (
        "Reconstruction from the paper (no official code): networks, loss weights and the "
        "release time follow DDPM, CycleGAN and the unofficial partial code.",
        "The paper states no batch size or training length: batch 4 and 100 epochs (the "
        "benchmark's equal budget).",
        "Checkpoint chosen by the best paired-validation PSNR (the paper does not say).",
    )
    #: DDPM's EMA; the paper gives no batch size, length or selection rule (see deviations)
    recipes: ClassVar[dict[str, dict[str, Any]]] = {
        "official": {"batch_size": 4, "epochs": 100, "ema_decay": 0.9999, "select": "best"},
    }
    #: names before the U-Net vocabulary shared with SynDiff and DisDiff
    aliases: ClassVar[dict[str, str]] = {
        "unet_ch_mult": "unet_mult",
        "unet_num_res_blocks": "unet_res_blocks",
        "unet_attn_resolutions": "unet_attn",
    }
    #: DDPM keeps an EMA of the weights with decay 0.9999 and samples with it.
    training_defaults: ClassVar[dict[str, Any]] = {"ema_decay": 0.9999}
    tiny_params: dict[str, Any] = {
        "unet_ch": 16,
        "unet_mult": [1, 2, 2],
        "unet_res_blocks": 1,
        "unet_attn": [16],
        "translator_ngf": 8,
        "translator_blocks": 1,
        "lr_denoiser": 1e-3,
        "lr_translator": 1e-3,
        "sample_steps": 8,
        "release_time": 100,
    }

    def __init__(self, params: dict[str, Any] | None = None, image_size: int = 256) -> None:
        super().__init__(params, image_size)
        p = self.params
        self._check_params()
        self.diffusion = GaussianDiffusion.linear(
            int(p["timesteps"]), float(p["beta_start"]), float(p["beta_end"])
        )
        self.sampler = self.diffusion.respaced(int(p["sample_steps"]))

        def unet() -> DDPMUNet:
            return DDPMUNet(
                in_ch=2,
                out_ch=1,
                ch=int(p["unet_ch"]),
                ch_mult=tuple(p["unet_mult"]),
                num_res_blocks=int(p["unet_res_blocks"]),
                attn_resolutions=tuple(p["unet_attn"]),
                dropout=float(p["unet_dropout"]),
                image_size=image_size,
            )

        def translator() -> ResnetGenerator:
            return init_weights(
                ResnetGenerator(1, 1, int(p["translator_ngf"]), int(p["translator_blocks"]))
            )

        # eps_<m>: denoiser of modality m, conditioned on the other modality.
        # g_<m>: translator *into* modality m (g_b: a -> b, g_a: b -> a).
        self.eps_a, self.eps_b = unet(), unet()
        self.g_a, self.g_b = translator(), translator()
        self.opt_denoiser = torch.optim.Adam(
            list(self.eps_a.parameters()) + list(self.eps_b.parameters()),
            lr=float(p["lr_denoiser"]),
            betas=tuple(p["betas_denoiser"]),
        )
        self.opt_translator = torch.optim.Adam(
            list(self.g_a.parameters()) + list(self.g_b.parameters()),
            lr=float(p["lr_translator"]),
            betas=tuple(p["betas_translator"]),
        )

    def _check_params(self) -> None:
        p = self.params
        T = int(p["timesteps"])
        if T < 1:
            raise ValueError(f"unit_ddpm: timesteps must be >= 1, got {T}")
        if not 1 <= int(p["sample_steps"]) <= T:
            raise ValueError(
                f"unit_ddpm: sample_steps must be in [1, {T}], got {p['sample_steps']}"
            )
        if not 0 <= int(p["release_time"]) <= T:
            raise ValueError(
                f"unit_ddpm: release_time must be in [0, {T}], got {p['release_time']}"
            )
        if p["translator_dsm"] not in _DSM_MODES:
            raise ValueError(
                f"unit_ddpm: translator_dsm must be one of {_DSM_MODES}, "
                f"got {p['translator_dsm']!r}"
            )
        for key in ("betas_denoiser", "betas_translator"):
            if len(p[key]) != 2:
                raise ValueError(f"unit_ddpm: {key} must be two numbers, got {p[key]!r}")

    # -------------------------------------------------------------- reporting
    @property
    def sampling_steps(self) -> int:
        """Reverse diffusion steps per translated slice (drives inference cost)."""
        return int(self.params["sample_steps"])

    @property
    def network_evaluations(self) -> int:
        """Denoiser forward passes per translated slice: one per step, two after the release."""
        released = int((self.sampler.timestep_map < int(self.params["release_time"])).sum())
        return self.sampling_steps + released

    # ----------------------------------------------------------------- training
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"denoiser": self.opt_denoiser, "translator": self.opt_translator}

    def ema_modules(self) -> dict[str, nn.Module]:
        """The denoisers only: DDPM averages the network it samples with, and the translators
        take no part in sampling (validation's collapse check then sees the live translators,
        the ones that train the denoisers)."""
        return {"eps_a": self.eps_a, "eps_b": self.eps_b}

    def _eps(
        self, net: nn.Module, x_t: torch.Tensor, cond_t: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        return net(torch.cat([x_t, cond_t], dim=1), t)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        p = self.params
        x1, x2 = batch["a"], batch["b"]
        n1, n2 = x1.shape[0], x2.shape[0]
        dev, T = x1.device, self.diffusion.num_timesteps
        q = self.diffusion.q_sample
        self.train()

        # Algorithm 1, lines 1-2: one time per iteration (per batch element, as in DDPM) for
        # both pseudo-pairs, (x1, g_b(x1)) and (g_a(x2), x2); four independent noises.
        t = torch.randint(0, T, (max(n1, n2),), device=dev)
        t_a, t_b = t[:n1], t[:n2]
        e1, e2_fake = torch.randn_like(x1), torch.randn_like(x1)
        e2, e1_fake = torch.randn_like(x2), torch.randn_like(x2)

        # Translations (with graph; the denoiser update uses them detached).
        fake2 = self.g_b(x1)  # a -> b
        fake1 = self.g_a(x2)  # b -> a
        x1_t, x2_t = q(x1, t_a, e1), q(x2, t_b, e2)

        # Line 3: denoisers on real images, conditioned on noisy translated partners.
        fake2_t_d = q(fake2.detach(), t_a, e2_fake)
        fake1_t_d = q(fake1.detach(), t_b, e1_fake)
        loss_eps1 = F.mse_loss(self._eps(self.eps_a, x1_t, fake2_t_d, t_a), e1)
        loss_eps2 = F.mse_loss(self._eps(self.eps_b, x2_t, fake1_t_d, t_b), e2)
        loss_denoiser = loss_eps1 + loss_eps2
        self.opt_denoiser.zero_grad(set_to_none=True)
        loss_denoiser.backward()
        self._clip(self.eps_a, self.eps_b)
        self.opt_denoiser.step()

        # Line 4: translators, denoisers fixed.
        for net in (self.eps_a, self.eps_b):
            net.requires_grad_(False)
        try:
            fake2_t, fake1_t = q(fake2, t_a, e2_fake), q(fake1, t_b, e1_fake)
            mode = p["translator_dsm"]
            loss_dsm = x1.new_zeros(())
            if mode in ("target", "both"):
                loss_dsm = loss_dsm + F.mse_loss(self._eps(self.eps_a, fake1_t, x2_t, t_b), e1_fake)
                loss_dsm = loss_dsm + F.mse_loss(self._eps(self.eps_b, fake2_t, x1_t, t_a), e2_fake)
            if mode in ("condition", "both"):
                loss_dsm = loss_dsm + F.mse_loss(self._eps(self.eps_a, x1_t, fake2_t, t_a), e1)
                loss_dsm = loss_dsm + F.mse_loss(self._eps(self.eps_b, x2_t, fake1_t, t_b), e2)
            loss_cyc = F.l1_loss(self.g_a(fake2), x1) + F.l1_loss(self.g_b(fake1), x2)
            loss_translator = float(p["lambda_dsm"]) * loss_dsm + float(p["lambda_cyc"]) * loss_cyc
            self.opt_translator.zero_grad(set_to_none=True)
            loss_translator.backward()
            self._clip(self.g_a, self.g_b)
            self.opt_translator.step()
        finally:
            for net in (self.eps_a, self.eps_b):
                net.requires_grad_(True)

        return {
            "loss_eps_a": float(loss_eps1.detach()),
            "loss_eps_b": float(loss_eps2.detach()),
            "loss_dsm_translator": float(loss_dsm.detach()),
            "loss_cycle": float(loss_cyc.detach()),
        }

    def _clip(self, *nets: nn.Module) -> None:
        clip = float(self.params["grad_clip"])
        if clip > 0:
            params = [q for n in nets for q in n.parameters() if q.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, clip)

    # -------------------------------------------------------------- translation
    def denoisers(self, direction: str) -> tuple[nn.Module, nn.Module]:
        """``(source-modality denoiser, target-modality denoiser)`` for ``direction``."""
        src, dst = split_direction(direction)
        return getattr(self, f"eps_{src}"), getattr(self, f"eps_{dst}")

    @torch.no_grad()
    def sample(
        self,
        source: torch.Tensor,
        direction: str,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Algorithm 2 on the respaced schedule: target-modality image for ``source``."""
        eps_src, eps_dst = self.denoisers(direction)
        diff = self.sampler
        release = int(self.params["release_time"])
        clip = bool(self.params["clip_denoised"])
        shape, dev = source.shape, source.device

        def randn() -> torch.Tensor:
            return torch.randn(shape, device=dev, dtype=source.dtype, generator=generator)

        x_dst = randn()
        x_src: torch.Tensor | None = None
        for k in reversed(range(diff.num_timesteps)):
            t = torch.full((shape[0],), k, device=dev, dtype=torch.long)
            t_model = diff.model_timesteps(t)
            if x_src is None:
                # Paper step t = k_model + 1; before the release (t > t_r) re-noise the source.
                cond = diff.q_sample(source, t, randn())
                if int(t_model[0]) + 1 <= release:
                    x_src = cond  # released: the source chain starts from its noised state
            else:
                cond = x_src
            eps_d = self._eps(eps_dst, x_dst, cond, t_model)
            if x_src is not None:
                eps_s = self._eps(eps_src, x_src, x_dst, t_model)
                x_dst_next = diff.p_sample(eps_d, x_dst, t, randn(), clip)
                x_src = diff.p_sample(eps_s, x_src, t, randn(), clip)
                x_dst = x_dst_next
            else:
                x_dst = diff.p_sample(eps_d, x_dst, t, randn(), clip)
        return x_dst.clamp(-1.0, 1.0)

    @torch.no_grad()
    def validation_outputs(self, x: torch.Tensor, direction: str) -> dict[str, torch.Tensor]:
        """The translator's output (collapse check: identity translators with condition-copying
        denoisers minimise every loss of the method)."""
        _, dst = split_direction(direction)
        return {"translator": getattr(self, f"g_{dst}")(x.to(self.device)).clamp(-1, 1)}

    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        split_direction(direction)
        was_training = self.training
        self.eval()
        try:
            return self.sample(x, direction)
        finally:
            self.train(was_training)
