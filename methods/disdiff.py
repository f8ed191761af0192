"""DisDiff (Zhang et al., MICCAI 2025): disentangled adversarial diffusion between two MR contrasts
(the paper: T1w <-> T2w).

No code was published; this implementation follows the paper (sections 2.1-2.3, eqs. 2-12, Fig. 1)
and, where the paper is silent, DRIT++ (its disentanglement module, ref. [16]) and SynDiff (its
adversarial diffusion module, ref. [15]). Modality i is domain ``a`` of the pair (T1w in the
paper), modality j is ``b``.

Parts
-----
- Disentanglement module (eqs. 6-9), :class:`mrbench_methods.nets.drit.Disentangler`: content
  encoders
  E_c (spatial content maps), attribute encoders E_a (8-d codes), decoders G(z_c, z_a), per-modality
  image discriminators D^m and the content discriminator D_c (eq. 7).
- Adversarial diffusion module (eqs. 2-5, 10-12): per-modality NCSN++ generators
  ``G_theta_m(x_{t+1}, t, z, cond=z_c, style=z_a)`` predicting x0 (SynDiff's generator, sizes and
  schedule), the 4-step large-step schedule (eq. 3, beta_min 0.1, beta_max 20), time-conditioned
  discriminators ``D_theta_m(x_t, x_{t+1}, t)`` with an R1 gradient penalty (eta in eq. 5).

One training step (SynDiff order: discriminators first, then all generators jointly)
----------------------------------------------------------------------------------------
1. Encode both inputs: z_c^m = E_c^m(m), z_a^m = E_a^m(m) (eq. 8).
2. Cross-modal synthesis by swapping attributes, m_{i->j} = G^j(z_c^i, z_a^j) (eq. 9); self
   reconstruction G^m(z_c^m, z_a^m); content re-extracted from the cross-modal images,
   z_c^{i->j} = E_c^j(m_{i->j}), and the cross-cycle m_{i->j->i} = G^i(z_c^{i->j}, z_a^i) (eq. 6).
3. Diffusion module (Fig. 1, eqs. 10-12): the generator of modality i reconstructs m_i from the
   content of the cross-modal image, z_c^{i->j}, and the attribute z_a^i: draw t, the pair
   (x_t, x_{t+1}) from q(. | m_i) (eq. 2), predict x0 = G_theta_i(x_{t+1}, t, z, z_c^{i->j}, z_a^i)
   (eq. 10), draw x_t from the posterior q(x_t | x_{t+1}, x0) (eq. 11) for the adversarial loss
   (eq. 4), and the cycle loss |m_i - x0| (eq. 12).
4. Discriminator updates: D^m on real vs cross-modal images, D_c on content maps (eq. 7: content of
   domain a labelled 1, of b 0), D_theta_m on real vs posterior-sampled x_t (eq. 5, R1 every
   ``r1_every`` steps on the real x_t, weight eta = ``r1_gamma``).
5. Generator update (encoders, decoders, diffusion generators; one joint loss).

Inference (end of section 2.3): z_c of the source image (E_c of the source modality, no noise),
an attribute code of the target modality, and the target modality's 4-step adversarial-diffusion
sampler from N(0, I) conditioned on (z_c, z_a). At test time of unpaired translation there is no
target image, so by default z_a is the MEAN attribute code (posterior mean mu) of the target
modality's training images, computed in :meth:`DisDiff.prepare_inference` into buffers (part of
the state dict; until then a running mean kept during training is used, so validation works);
``attribute_mode: prior`` samples z_a ~ N(0, I) instead (DRIT++'s prior), under torch's seed.

Ablation variants (Table 2) are parameters of this one plugin
-------------------------------------------------------------
- ``disdiff``: ``use_disentanglement``, ``use_diffusion``, ``use_content_discriminator`` all true.
- ``disdiff_no_dc``: no content discriminator.
- ``disdiff_dis_only``: no diffusion, no D_c: the translation is the decoder output
  G^j(z_c^i, z_a^j) (DRIT++ with DisDiff's losses).
- ``disdiff_diff_only``: no disentanglement: the diffusion generators are conditioned on a
  pixel-space source image (SynDiff's 2-channel input [x_{t+1}, source]); the source for
  reconstructing m_i is the one-step x0 prediction of the other modality's generator from pure
  noise at the last step, conditioned on m_i, with its gradient stopped, so the cycle of eq. 12
  closes without non-diffusive generators. Inference: the target modality's sampler conditioned
  on the source.

Choices where the paper is silent (each also listed in docs/methods/disdiff.md)
-------------------------------------------------------------------------------
1. Disentanglement networks (section 2.2, eqs. 6-9): DRIT++'s official networks
   (methods/nets/drit.py, shared with the ``drit`` plugin): content map of 256 channels at 1/4
   resolution (7x7 conv of 64, 2 stride-2 convs, 3 private residual blocks + 1 block shared by
   both modalities, Gaussian noise of s.d. 1 on the map in training), 8-d attribute code with
   mean and log-variance (width 64, 4 blocks; sampled by reparameterisation in training, its
   mean at inference), decoders with a shared residual block, 3 residual blocks, layer-norm
   upsampling and the attribute tiled and concatenated before every stage. Image
   discriminators: DRIT++'s multi-scale ones (3 scales of 4 stride-2 4x4 convs 64 -> 512,
   LeakyReLU, 1x1 conv to patch logits, no normalisation), but one per modality: DisDiff has
   no random-attribute fakes, so DRIT++'s second pair has nothing to judge. DRIT++'s L2 of
   0.01 on the content maps. The project's initialisation (every conv and linear weight
   N(0, 0.02), zero biases) rather than DRIT++'s (conv weights only): see the docs.
2. Content discriminator D_c (eq. 7): DRIT++'s (3 reflect-padded 7x7 stride-2 convs of 256
   channels, a 4x4 conv, LeakyReLU, a 1x1 conv to patch logits, no normalisation; the official
   code never applies its instance norm). Small maps keep the stride-2 convs that fit (the
   demo's 8 px maps: one 7x7 conv, then a 2x2 conv). It sees the content maps as the decoders
   do (with the training noise), domain a (T1w in the paper) labelled 1 and b 0.
3. Encoders' side of eq. 7 (the paper states only D_c's objective): DRIT++'s, binary cross-
   entropy of D_c(z_c) against the target 0.5 for both modalities, weight 1. D_c is updated
   ``content_dis_steps`` = 3 times per generator update on the same batch (DRIT++ updates D_c
   alone on two of three iterations and everything on the third) with gradient-norm clipping
   at 5 (DRIT++) and lr 1e-4 (section 3.2; DRIT++ uses 4e-5).
4. Diffusion generator (eq. 10): SynDiff's NCSN++ at SynDiff's paper size (base 64, multipliers
   (1,1,2,2,4,4), 2 residual blocks per level, attention at 16 px, latent z of 100 mapped by
   4 layers to 256). The content map enters through ``cond``: it is resized (bilinear) to the
   resolution of every encoder level (``cond_levels``, default all), projected by a 1x1 conv
   to the level's width and added to the input of the level's first residual block. The
   attribute code enters through ``style``: it is concatenated to the mapped latent that drives
   the adaptive group norm of every residual block. The image input is x_{t+1} alone.
5. Time-conditioned discriminators (eq. 5): SynDiff's, input (x_t, x_{t+1}), 6 down blocks at
   256 px (fewer on small images); R1 penalty on real x_t with eta = 1, every 10 steps (lazy,
   not scaled by the interval, as SynDiff); non-saturating (softplus) losses for every
   adversarial term (eqs. 4, 5, 7 and the image discriminators).
6. Loss weights: cross-cycle L1 (eq. 6) 10, self-reconstruction L1 10, KL 0.01, content
   adversarial (eq. 7) 1, image adversarial 1 (all DRIT++); diffusion adversarial (eq. 4) 1 and
   diffusion cycle L1 (eq. 12) 1 (``lambda_diff_cycle``; SynDiff weights its L1 terms 0.5,
   DRIT++ its reconstructions 10; the diffusion output is DisDiff's translation, so it gets the
   unit weight of its adversarial term). DRIT++'s latent regression is implemented but off
   (``lambda_latent_reg`` 0): the paper lists no such loss and inference uses a fixed code;
   DRIT++'s mode-seeking loss is not used for the same reason.
7. Eq. 6 re-extracts the content of m_{i->j} with E_c^{m_i}; m_{i->j} is an image of modality j,
   so, as in DRIT++, E_c^{m_j} is used. The cross-cycle uses the original attribute z_a^{m_i} as
   eq. 6 writes (DRIT++ re-encodes it from m_{j->i}).
8. What conditions the diffusion generator in training (Fig. 1): the content of the cross-modal
   image, z_c^{i->j} = E_c^j(m_{i->j}), with the attribute z_a^i; eq. 10 writes z_c^{m_i}, the
   figure shows the cross-modal images feeding the diffusion module. At inference the content
   comes from the real source image through the source modality's encoder.
9. Eq. 12 is applied to the one-step x0 prediction at a random step t (SynDiff's practice),
   not to the output of the whole 4-step chain; ``diff_cycle_chain: true`` backpropagates
   through the full sampler instead (4x the cost).
10. Gradients of the diffusion losses flow into the encoders and decoders (one joint generator
   loss), so the content map is trained to carry what the diffusion generator needs
   (``diff_condition_grad: false`` stops them). In ``disdiff_diff_only`` the synthetic source is
   the generators' own output and its gradient is always stopped: with it, the two generators
   learn to hide the image in the translation (a 300-step demo run scored 4.2 dB PSNR against
   15.1 dB with the stop, identity 11.2 dB).
11. Update order per step: image and diffusion discriminators (one optimiser), then D_c, all on
   detached inputs; then one step of all generators (one optimiser) against the updated
   discriminators.
12. Optimisers: Adam(0.5, 0.9), lr 1e-4 for every network (section 3.2); the trainer's plateau
   schedule (x0.1 after 2 validations without a new best validation PSNR; the paper says
   validation loss) via :attr:`training_defaults`. :meth:`ema_modules` lists the generator side
   (disentangler and diffusion generators); whether an EMA is kept is the training config's
   ``ema_decay`` (SynDiff uses 0.999).
13. The attribute code at inference in unpaired translation: the training-set mean (above).
14. Brain masks are not used by the losses (as in SynDiff and DRIT++).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mrbench_methods.base import TranslationMethod, register, split_direction
from mrbench_methods.nets.adversarial_diffusion import AdversarialDiffusion
from mrbench_methods.nets.drit import (
    DOMAINS,
    INFERENCE_DEFAULTS,
    NETWORK_DEFAULTS,
    NETWORK_TINY,
    OTHER,
    AttributeMeans,
    bce_logits,
    build_content_discriminator,
    build_disentangler,
    build_image_discriminators,
    check_image_size,
    kl_to_prior,
)
from mrbench_methods.nets.init import init_weights
from mrbench_methods.nets.losses import R1Penalty, d_loss_fake, d_loss_real, g_loss_nonsaturating
from mrbench_methods.nets.ncsnpp import NCSNpp
from mrbench_methods.nets.time_discriminator import TimeDiscriminator
from mrbench_methods.syndiff import (
    DIFFUSION_DEFAULTS,
    LATENT_DEFAULTS,
    TIME_DISCRIMINATOR_DEFAULTS,
)


def _item(value: torch.Tensor | float) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _set_requires_grad(modules: list[nn.Module], flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


@register("disdiff")
class DisDiff(AttributeMeans, TranslationMethod):
    display_name = "DisDiff"
    citation = "DisDiff, MICCAI 2025"
    family = "disentangled+diffusion"
    seconds_per_image_256 = 0.35
    capabilities = frozenset({"content_maps"})

    @classmethod
    def components(cls, params: dict[str, Any]) -> dict[str, bool]:
        """Table 2's checkmarks, read from the resolved switches (never from the config name)."""
        p = {**cls.defaults, **params}
        dis = bool(p["use_disentanglement"])
        return {
            "Disentangled": dis,
            "Diffusion": bool(p["use_diffusion"]),
            "D_c": dis and bool(p["use_content_discriminator"]),
        }

    @classmethod
    def capabilities_for(cls, params: dict[str, Any]) -> frozenset[str]:
        """Content maps need the content encoders: not offered without disentanglement."""
        if not bool({**cls.defaults, **params}["use_disentanglement"]):
            return frozenset()
        return frozenset(cls.capabilities)

    """DisDiff and its ablation variants (see the module docstring for every design choice)."""

    defaults: ClassVar[dict[str, Any]] = {
        # --- variant switches (Table 2)
        "use_disentanglement": True,
        "use_diffusion": True,
        "use_content_discriminator": True,
        # --- disentanglement module (DRIT++'s networks and sizes)
        **NETWORK_DEFAULTS,
        "attr_vae": True,  # attribute encoder outputs mean and log-variance (+ KL term)
        # --- adversarial diffusion module (SynDiff sizes and schedule)
        **DIFFUSION_DEFAULTS,
        **LATENT_DEFAULTS,
        "cond_levels": None,  # U-Net levels that receive the content map (None: all)
        **TIME_DISCRIMINATOR_DEFAULTS,
        "r1_gamma": 1.0,  # eta of eq. 5
        "r1_every": 10,  # lazy regularisation interval
        # --- loss weights (DRIT++ for the disentanglement terms)
        "lambda_cross_cycle": 10.0,
        "lambda_self_recon": 10.0,
        "lambda_kl": 0.01,
        "lambda_content_l2": 0.01,  # DRIT++'s L2 on the content maps
        "lambda_content_adv": 1.0,
        "lambda_image_adv": 1.0,
        "lambda_latent_reg": 0.0,
        "lambda_diff_adv": 1.0,
        "lambda_diff_cycle": 1.0,
        "diff_cycle_chain": False,
        "diff_condition_grad": True,  # diffusion losses backpropagate into the disentangler
        "content_dis_clip": 5.0,
        "content_dis_steps": 3,  # D_c updates per generator update (DRIT++'s d_iter)
        # --- optimisation (section 3.2)
        "lr": 1e-4,
        "lr_content_dis": 1e-4,
        "beta1": 0.5,
        "beta2": 0.9,
        # --- inference
        **INFERENCE_DEFAULTS,
    }
    tiny_params: ClassVar[dict[str, Any]] = {
        **NETWORK_TINY,
        "dc_layers": 2,
        "unet_ch": 16,
        "unet_mult": [1, 2],
        "unet_res_blocks": 1,
        "unet_attn": [],
        "nz": 8,
        "z_emb_dim": 32,
        "n_mlp": 1,
        "tdis_ch": 8,
        "tdis_t_emb": 32,
        "tdis_down": 3,
    }
    optimizer = "Adam"
    deviations = (
        "Reconstruction from the paper (no official code).",
        "The paper states no training length: 100 epochs at its batch size 4.",
        "EMA 0.999 of the generators (SynDiff's; the paper does not mention an EMA).",
        "Plateau rule on the validation PSNR (the paper reduces on the validation loss).",
    )
    #: section 3.2: batch 4, lr cut by 0.1 after two validations without improvement,
    #: validation every 5 epochs, the best validated model
    recipes: ClassVar[dict[str, dict[str, Any]]] = {
        "official": {
            "batch_size": 4,
            "epochs": 100,
            "lr_schedule": "plateau",
            "lr_patience": 2,
            "lr_factor": 0.1,
            "ema_decay": 0.999,
            "select": "best",
        },
    }
    #: names before the shared vocabulary of the adversarial diffusion networks
    aliases: ClassVar[dict[str, str]] = {"num_timesteps": "num_steps"}
    training_defaults: ClassVar[dict[str, Any]] = {"lr_schedule": "plateau", "lr_patience": 2}

    def __init__(self, params: dict[str, Any] | None = None, image_size: int = 64) -> None:
        super().__init__(params, image_size)
        p = self.params
        self.use_dis = bool(p["use_disentanglement"])
        self.use_diff = bool(p["use_diffusion"])
        self.use_dc = bool(p["use_content_discriminator"])
        if not (self.use_dis or self.use_diff):
            raise ValueError(
                "method 'disdiff': use_disentanglement and use_diffusion cannot both be false"
            )
        if self.use_dc and not self.use_dis:
            raise ValueError(
                "method 'disdiff': use_content_discriminator needs use_disentanglement "
                "(D_c judges content maps)"
            )
        if p["attribute_mode"] not in ("mean", "prior"):
            raise ValueError(
                f"method 'disdiff': attribute_mode must be 'mean' or 'prior', "
                f"got {p['attribute_mode']!r}"
            )
        check_image_size("disdiff", image_size, p)
        gen_params: list[nn.Parameter] = []
        if self.use_dis:
            # the project's initialisation, not DRIT++'s (docs/methods/disdiff.md)
            self.disentangler = build_disentangler(
                p, attr_vae=bool(p["attr_vae"]), init=init_weights
            )
            self.image_dis = build_image_discriminators(p, image_size, init=init_weights)
            gen_params += list(self.disentangler.parameters())
            self._init_attribute_means(int(p["attr_dim"]))
        if self.use_dc:
            self.content_dis = build_content_discriminator(
                p, image_size, self.disentangler.content_ch, init=init_weights
            )
        if self.use_diff:
            self._build_diffusion()
            gen_params += list(self.diff_gen.parameters())
        betas = (float(p["beta1"]), float(p["beta2"]))
        self.opt_gen = torch.optim.Adam(gen_params, lr=float(p["lr"]), betas=betas)
        dis_params: list[nn.Parameter] = []
        if self.use_dis:
            dis_params += list(self.image_dis.parameters())
        if self.use_diff:
            dis_params += list(self.diff_dis.parameters())
        self.opt_dis = torch.optim.Adam(dis_params, lr=float(p["lr"]), betas=betas)
        if self.use_dc:
            self.opt_content_dis = torch.optim.Adam(
                self.content_dis.parameters(), lr=float(p["lr_content_dis"]), betas=betas
            )

    # ------------------------------------------------------------------ building
    def _build_diffusion(self) -> None:

        p = self.params
        self.diffusion = AdversarialDiffusion(
            num_steps=int(p["num_steps"]),
            beta_min=float(p["beta_min"]),
            beta_max=float(p["beta_max"]),
        )
        if self.use_dis:
            # content map via `cond`, attribute code via `style`; image input x_{t+1} only
            gen_kw = {
                "in_ch": 1,
                "cond_channels": self.disentangler.content_ch,
                "style_dim": int(p["attr_dim"]),
            }
        else:
            # pixel-space conditioning as in SynDiff: input channels [x_{t+1}, source]
            gen_kw = {"in_ch": 2, "cond_channels": 0, "style_dim": 0}
            if int(p["nz"]) <= 0:
                raise ValueError("method 'disdiff': use_disentanglement false needs nz > 0")
        self.diff_gen = nn.ModuleDict(
            {
                m: NCSNpp(
                    out_ch=1,
                    image_size=self.image_size,
                    nf=int(p["unet_ch"]),
                    ch_mult=tuple(p["unet_mult"]),
                    num_res_blocks=int(p["unet_res_blocks"]),
                    attn_resolutions=tuple(p["unet_attn"]),
                    nz=int(p["nz"]),
                    z_emb_dim=int(p["z_emb_dim"]),
                    n_mlp=int(p["n_mlp"]),
                    cond_levels=p["cond_levels"],
                    **gen_kw,
                )
                for m in DOMAINS
            }
        )
        # SynDiff: 6 downsampling blocks at 256 px; fewer on small images (>= 2 px left)
        n_down = max(1, min(int(p["tdis_down"]), int(math.log2(self.image_size)) - 1))
        self.diff_dis = nn.ModuleDict(
            {
                m: TimeDiscriminator(
                    in_ch=2, ngf=int(p["tdis_ch"]), t_emb_dim=int(p["tdis_t_emb"]), n_down=n_down
                )
                for m in DOMAINS
            }
        )
        self.r1 = R1Penalty(float(p["r1_gamma"]), int(p["r1_every"]))

    # ----------------------------------------------------------------- contract
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"gen": self.opt_gen, "dis": self.opt_dis}
        if self.use_dc:
            opts["content_dis"] = self.opt_content_dis
        return opts

    def ema_modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {}
        if self.use_dis:
            mods["disentangler"] = self.disentangler
        if self.use_diff:
            mods["diff_gen"] = self.diff_gen
        return mods

    # --------------------------------------------------------- diffusion helpers
    def _x0_pred(
        self,
        m: str,
        x_tp1: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None = None,
        style: torch.Tensor | None = None,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """G_theta_m (eq. 10): x0 estimate from x_{t+1} and the conditioning."""
        z = torch.randn(x_tp1.shape[0], int(self.params["nz"]), device=x_tp1.device)
        if self.use_dis:
            return self.diff_gen[m](x_tp1, t, z, cond=cond, style=style)
        return self.diff_gen[m](torch.cat([x_tp1, source], dim=1), t, z)

    def _sample(
        self,
        m: str,
        like: torch.Tensor,
        cond: torch.Tensor | None = None,
        style: torch.Tensor | None = None,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The few-step reverse process (eq. 11) of modality ``m`` from x_T ~ N(0, I).

        Under ``torch.no_grad`` (inference) this is the shared sampler; with gradients enabled
        (``diff_cycle_chain``) the same chain is unrolled here so that eq. 12 backpropagates.
        """

        def predict(x_tp1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self._x0_pred(m, x_tp1, t, cond, style, source)

        if not torch.is_grad_enabled():
            return self.diffusion.sample(predict, like.shape, device=like.device)
        x = torch.randn_like(like)
        for i in reversed(range(self.diffusion.num_steps)):
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            x = self.diffusion.sample_posterior(predict(x, t), x, t)
        return x

    def _steps(self, x: torch.Tensor) -> torch.Tensor:
        return self.diffusion.sample_timesteps(x.shape[0], x.device)

    # ----------------------------------------------------------------- training
    def _disentangle(self, x: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
        """Eqs. 6, 8, 9: codes, cross-modal images, self and cross-cycle reconstructions."""
        net = self.disentangler
        zc = {m: net.content(x[m], m) for m in DOMAINS}
        za, mu, logvar = {}, {}, {}
        for m in DOMAINS:
            za[m], mu[m], logvar[m] = net.attribute(x[m], m)
        # fake[j] = m_{i->j} = G^j(z_c^i, z_a^j), an image of modality j made from i's content;
        # the decoders' shared first block sees z_c^i for both the cross-modal image and the
        # self-reconstruction: computed once (net.decode would run it twice, same result)
        shared = {m: net.dec_share(zc[m]) for m in DOMAINS}
        fake = {OTHER[i]: net.dec[OTHER[i]](shared[i], za[OTHER[i]]) for i in DOMAINS}
        recon = {m: net.dec[m](shared[m], za[m]) for m in DOMAINS}
        # content of the cross-modal image, by the encoder of its modality: zc_cross[i] is
        # E_c^j(m_{i->j}), the content that should reproduce m_i
        zc_cross = {i: net.content(fake[OTHER[i]], OTHER[i]) for i in DOMAINS}
        cross = {i: net.decode(zc_cross[i], za[i], i) for i in DOMAINS}
        out: dict[str, dict[str, Any]] = {
            "zc": zc,
            "za": za,
            "mu": mu,
            "logvar": logvar,
            "fake": fake,
            "recon": recon,
            "zc_cross": zc_cross,
            "cross": cross,
        }
        if float(self.params["lambda_latent_reg"]) > 0:
            z_rand = {m: torch.randn_like(za[m]) for m in DOMAINS}
            out["latent_reg"] = {
                j: (net.attribute(net.decode(zc[OTHER[j]], z_rand[j], j), j)[1], z_rand[j])
                for j in DOMAINS
            }
        return out

    def _diffuse(
        self, x: dict[str, torch.Tensor], dis: dict[str, dict[str, Any]] | None
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Eqs. 2, 10-12 for both modalities: x_t pairs, x0 estimates, posterior samples."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        last = self.diffusion.num_steps - 1
        trans: dict[str, torch.Tensor] = {}
        if dis is None:
            # diff_only: one-step translation i -> j from pure noise at the last step
            for i in DOMAINS:
                j = OTHER[i]
                noise = torch.randn_like(x[i])
                t_last = torch.full((noise.shape[0],), last, device=noise.device, dtype=torch.long)
                # the generator's own output becomes the source: stop its gradient (see notes)
                trans[j] = self._x0_pred(j, noise, t_last, source=x[i]).detach()
        for i in DOMAINS:
            if dis is not None:
                kw = {"cond": dis["zc_cross"][i], "style": dis["za"][i]}
                if not self.params["diff_condition_grad"]:
                    kw = {k: v.detach() for k, v in kw.items()}
            else:
                kw = {"source": trans[OTHER[i]]}
            t = self._steps(x[i])
            x_t, x_tp1 = self.diffusion.q_sample_pairs(x[i], t)
            x0 = self._x0_pred(i, x_tp1, t, **kw)
            x_t_fake = self.diffusion.sample_posterior(x0, x_tp1, t)
            rec = self._sample(i, x[i], **kw) if self.params["diff_cycle_chain"] else x0
            out[i] = {"t": t, "x_t": x_t, "x_tp1": x_tp1, "x0": rec, "x_t_fake": x_t_fake}
        return out

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        p = self.params
        x = {m: batch[m].to(self.device) for m in DOMAINS}
        dis = self._disentangle(x) if self.use_dis else None
        diff = self._diffuse(x, dis) if self.use_diff else None
        logs: dict[str, float] = {}

        # ---- 1. discriminators on detached fakes
        loss_d = x["a"].new_zeros(())
        if dis is not None:
            for m in DOMAINS:
                real = self.image_dis[m](x[m])
                fake = self.image_dis[m](dis["fake"][m].detach())
                loss_d = loss_d + bce_logits(real, 1.0) + bce_logits(fake, 0.0)
            logs["d_image"] = float(loss_d.detach())
        if diff is not None:
            r1 = self.r1.due(step)
            loss_dt = x["a"].new_zeros(())
            for m in DOMAINS:
                d = diff[m]
                x_t = d["x_t"].detach().requires_grad_(r1)
                real = self.diff_dis[m](x_t, d["t"], d["x_tp1"].detach())
                fake = self.diff_dis[m](d["x_t_fake"].detach(), d["t"], d["x_tp1"].detach())
                loss_dt = loss_dt + d_loss_real(real) + d_loss_fake(fake)
                if r1:
                    pen = self.r1(real, x_t)
                    loss_dt = loss_dt + pen
                    logs[f"r1_{m}"] = _item(pen)
            logs["d_diffusion"] = _item(loss_dt)
            loss_d = loss_d + loss_dt
        self.opt_dis.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_dis.step()
        if self.use_dc:
            assert dis is not None
            zc_detached = {m: dis["zc"][m].detach() for m in DOMAINS}
            for _ in range(int(p["content_dis_steps"])):
                logit = {m: self.content_dis(zc_detached[m]) for m in DOMAINS}
                loss_dc = bce_logits(logit["a"], 1.0) + bce_logits(logit["b"], 0.0)
                self.opt_content_dis.zero_grad(set_to_none=True)
                loss_dc.backward()
                nn.utils.clip_grad_norm_(
                    self.content_dis.parameters(), float(p["content_dis_clip"])
                )
                self.opt_content_dis.step()
            logs["d_content"] = _item(loss_dc)

        # ---- 2. all generators against the updated discriminators
        frozen = [self.image_dis] if self.use_dis else []
        if self.use_diff:
            frozen.append(self.diff_dis)
        if self.use_dc:
            frozen.append(self.content_dis)
        _set_requires_grad(frozen, False)
        loss_g = x["a"].new_zeros(())
        if dis is not None:
            adv = sum(bce_logits(self.image_dis[m](dis["fake"][m]), 1.0) for m in DOMAINS)
            self_rec = sum(F.l1_loss(dis["recon"][m], x[m]) for m in DOMAINS)
            cross = sum(F.l1_loss(dis["cross"][m], x[m]) for m in DOMAINS)
            kl = sum(kl_to_prior(dis["mu"][m], dis["logvar"][m]) for m in DOMAINS)
            l2 = sum(dis["zc"][m].pow(2).mean() for m in DOMAINS)
            loss_g = (
                loss_g
                + float(p["lambda_image_adv"]) * adv
                + float(p["lambda_self_recon"]) * self_rec
                + float(p["lambda_cross_cycle"]) * cross
                + float(p["lambda_kl"]) * kl
                + float(p["lambda_content_l2"]) * l2
            )
            logs.update(
                g_image_adv=_item(adv),
                self_recon=_item(self_rec),
                cross_cycle=_item(cross),
                kl=_item(kl),
                content_l2=_item(l2),
            )
            if "latent_reg" in dis:
                lr_loss = sum(F.l1_loss(a, b) for a, b in dis["latent_reg"].values())
                loss_g = loss_g + float(p["lambda_latent_reg"]) * lr_loss
                logs["latent_reg"] = _item(lr_loss)
        if self.use_dc:
            assert dis is not None
            cadv = sum(bce_logits(self.content_dis(dis["zc"][m]), 0.5) for m in DOMAINS)
            loss_g = loss_g + float(p["lambda_content_adv"]) * cadv
            logs["g_content_adv"] = _item(cadv)
        if diff is not None:
            dadv = sum(
                g_loss_nonsaturating(
                    self.diff_dis[m](diff[m]["x_t_fake"], diff[m]["t"], diff[m]["x_tp1"].detach())
                )
                for m in DOMAINS
            )
            cyc = sum(F.l1_loss(diff[m]["x0"], x[m]) for m in DOMAINS)
            loss_g = (
                loss_g + float(p["lambda_diff_adv"]) * dadv + float(p["lambda_diff_cycle"]) * cyc
            )
            logs.update(g_diffusion_adv=_item(dadv), diffusion_cycle=_item(cyc))
        self.opt_gen.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_gen.step()
        _set_requires_grad(frozen, True)
        logs["g_total"] = _item(loss_g)
        if dis is not None:
            self._update_running_attributes(dis["mu"])
        return logs

    # --------------------------------------------------------- attribute codes
    def prepare_inference(self, slices: Iterator[dict[str, torch.Tensor]]) -> None:
        """Mean attribute code of each modality over the training slices (variants with the
        disentanglement module; see :class:`mrbench_methods.nets.drit.AttributeMeans`)."""
        if self.use_dis:
            super().prepare_inference(slices)

    # -------------------------------------------------------------- translation
    def content_map(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """z_c of a batch of images of ``domain`` (``"a"``/``"b"``, no training noise), e.g.
        for Fig. 3."""
        if not self.use_dis:
            raise ValueError("method 'disdiff': this variant has no content encoders")
        return super().content_map(x, domain)

    @property
    def sampling_steps(self) -> int:
        """Generator calls per translation: the diffusion steps, or 1 (the decoder) without."""
        return int(self.params["num_steps"]) if self.use_diff else 1

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        src, dst = split_direction(direction)
        x = x.to(self.device)
        if self.use_dis:
            zc = self.disentangler.content(x, src, noise=False)
            za = self.target_attribute(dst, x.shape[0])
            if not self.use_diff:
                return self.disentangler.decode(zc, za, dst).clamp(-1, 1)
            return self._sample(dst, x, cond=zc, style=za).clamp(-1, 1)
        return self._sample(dst, x, source=x).clamp(-1, 1)
