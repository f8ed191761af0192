"""DRIT++ (Lee et al., ECCV 2018 / IJCV 2020) as its official code trains it (``--concat 1``,
mode seeking on, ``--dis_scale 3``), networks from :mod:`mrbench_methods.nets.drit`.

Batch and the two kinds of fakes
--------------------------------
A batch of ``B`` slices per modality is split in two halves (the published batch 2: one slice
each): the first half is *encoded* (content z_c and attribute z_a), the second half only serves
as real images for the second pair of discriminators (``ceil(B/2)`` and ``floor(B/2)`` slices
for larger batches, e.g. equal_budget's 4). For target modality j and source i:
``fake_enc[j] = G_j(z_c^i, z_a^j)`` (translation with the encoded attribute),
``self_rec[j] = G_j(z_c^j, z_a^j)``, ``fake_rand[j] = G_j(z_c^i, z)`` and
``fake_rand2[j] = G_j(z_c^i, z')`` with z, z' ~ N(0, I) (random attributes). The cross cycle
re-encodes the fakes: ``cross[i] = G_i(E_c^j(fake_enc[j]), E_a^i(fake_enc[i]))`` (a sampled
attribute).

One iteration (official order; ``d_iter`` = 3)
---------------------------------------------
- Two of every three iterations (``step % d_iter != d_iter - 1``) update only the content
  discriminator D_c on the content maps of the encoded half (domain ``a`` labelled 0, ``b`` 1, BCE),
  gradient norm clipped at 5, lr 4e-5.
- The third iteration:
  1. discriminators on detached fakes, each with sigmoid + BCE summed over its 3 scales:
     D1_m (real encoded half vs ``fake_enc[m]``), D2_m (real random half vs ``fake_rand[m]``
     and vs ``fake_rand2[m]``), then D_c once more (clipped);
  2. encoders and generators against the updated discriminators, two updates from one forward
     pass: (a) content encoders, attribute encoders and decoders on
     ``D_c(z_c) -> 0.5`` (BCE, weight 1) + ``D1(fake_enc) -> 1`` + KL(z_a) x 0.01 +
     mean(z_c^2) x 0.01 + cross-cycle L1 x 10 + self-reconstruction L1 x 10; (b) content
     encoders and decoders only on ``D2(fake_rand), D2(fake_rand2) -> 1`` + the mode-seeking
     loss 1 / (mean|fake_rand2 - fake_rand| / mean|z' - z| + 1e-5) + latent regression
     ``|mu(E_a^j(fake_rand[j])) - z|`` x 10 (its gradient reaches the attribute encoders but
     they are not stepped, as in the official code).

Adam(0.5, 0.999), lr 1e-4, weight decay 1e-4 for every network (D_c: lr 4e-5); the linear decay
over the second half of training comes from :attr:`DRIT.training_defaults`, as does batch 2.

Test time: z_c of the source image (no noise) and, for the target modality, the mean attribute
code of its training slices (:class:`mrbench_methods.nets.drit.AttributeMeans`), or a code sampled
from
the prior with ``attribute_mode: prior``; never the paired target image.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mrbench_methods.base import TranslationMethod, register, split_direction
from mrbench_methods.nets import drit as nets
from mrbench_methods.nets.drit import DOMAINS, OTHER, bce_logits

#: the official ``train.py``'s cap on full iterations (the DRIT code and MGUIT, built on it)
OFFICIAL_FULL_ITERATIONS = 500_000


def _params(modules: list[nn.Module]) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]


@register("drit")
class DRIT(nets.AttributeMeans, TranslationMethod):
    """DRIT++: disentangled content and attribute representations (see the module docstring)."""

    display_name = "DRIT++"
    citation = "Lee et al., IJCV 2020"
    family = "disentangled"
    #: an encoded and a random half per process: data-parallel shares of an even size >= 2
    rank_batch_multiple = 2
    seconds_per_image_256 = None
    capabilities = frozenset({"content_maps"})
    deviations = (
        "One-channel images (the official code supports them with --input_dim_a/b 1).",
        "Augmentation resizes by 256/216 and crops at the slice size (the official code resizes "
        "to 256 and crops 216 px): the same scale change, but the networks train on 256 px "
        "crops (content maps of 64 x 64, a 2 x 2 patch of content-discriminator logits), the "
        "size they are tested on.",
        "The second generator update takes its gradients at the weights before the first update "
        "(both gradients come from one forward pass, by two backward passes before either "
        "step); the official code back-propagates through a graph whose weights the first "
        "optimiser step has changed in place, which PyTorch 0.4 "
        "allowed and current PyTorch refuses.",
        "The d_iter schedule runs on the global step count (iterations 3k + 2 update everything) "
        "instead of restarting every epoch; the trainer's steps count every iteration, including "
        "the content-discriminator-only ones, so the official cap of 500k full iterations is "
        "1.5 M steps here.",
        "The KL term is summed over the code and averaged over the encoded half-batch (the "
        "official code sums over the batch too; identical at the published batch of 2).",
        "Batches above 2 (equal_budget's 4) are split into an encoded half of ceil(B/2) and a "
        "random half of floor(B/2) slices; the official code hard-codes halves of 1.",
        "At test time the attribute code of the target modality is the mean posterior code of its "
        "training slices (the official test samples it from the prior or encodes a reference "
        "image; the paired target must not be used); attribute_mode: prior samples instead.",
    )
    defaults: ClassVar[dict[str, Any]] = {
        **nets.NETWORK_DEFAULTS,  # the official sizes
        # losses
        "lambda_adv": 1.0,
        "lambda_content_adv": 1.0,
        "lambda_cross_cycle": 10.0,
        "lambda_self_recon": 10.0,
        "lambda_latent_reg": 10.0,
        "lambda_kl": 0.01,
        "lambda_content_l2": 0.01,
        "lambda_mode_seeking": 1.0,  # 0: --no_ms (no second random attribute)
        # schedule and optimisers
        "d_iter": 3,
        "content_dis_clip": 5.0,
        "lr": 1e-4,
        "lr_content_dis": 4e-5,
        "beta1": 0.5,
        "beta2": 0.999,
        "weight_decay": 1e-4,
        "init_gain": 0.02,
        **nets.INFERENCE_DEFAULTS,
    }
    tiny_params: ClassVar[dict[str, Any]] = {**nets.NETWORK_TINY, "d_iter": 1}
    #: The official recipe (``train.py``): batch 2, resize 256 / random crop 216 / flip (as a
    #: resize by 256/216 and a crop at the slice size here), 1200 epochs with linear decay from
    #: epoch 600 but at most 500k full iterations (those that update more than the content
    #: discriminator, one in ``d_iter`` = 3): 1.5 M of our steps (every loader iteration is a
    #: step), ``steps_cap``, under which the schedule keeps its 1200-epoch length. On IXI's
    #: training split (2,700 steps an epoch at batch 2) the cap ends training after ~555 epochs,
    #: before the decay would start; a split under 2,500 slices trains all 1200 epochs and
    #: decays from epoch 600, one between them stops part-way through the decay.
    recipes: ClassVar[dict[str, dict[str, Any]]] = {
        "official": {
            "batch_size": 2,
            "epochs": 1200,
            "steps_cap": OFFICIAL_FULL_ITERATIONS * 3,
            "lr_schedule": "linear",
            "lr_decay_start": 0.5,
            "augment": "resize_crop_flip",
            "augment_resize": 256 / 216,
            "select": "last",
        },
        "equal_budget": {
            "lr_schedule": "linear",
            "lr_decay_start": 0.5,
            "augment": "resize_crop_flip",
            "augment_resize": 256 / 216,
            "select": "last",
        },
    }
    #: the official schedule (constant, then linear decay from epoch 600 of 1200) and batch
    training_defaults: ClassVar[dict[str, Any]] = {
        "lr_schedule": "linear",
        "lr_decay_start": 0.5,
        "batch_size": 2,
    }

    def __init__(self, params: dict[str, Any] | None = None, image_size: int = 256) -> None:
        super().__init__(params, image_size)
        p = self.params
        nets.check_image_size("drit", image_size, p)
        if int(p["d_iter"]) < 1:
            raise ValueError(f"method 'drit': d_iter must be >= 1, got {p['d_iter']}")
        gain = float(p["init_gain"])
        self.disentangler = nets.build_disentangler(p, gain=gain)
        # dis_enc judges fakes with encoded attributes, dis_rand fakes with random ones
        self.dis_enc = nets.build_image_discriminators(p, image_size, gain)
        self.dis_rand = nets.build_image_discriminators(p, image_size, gain)
        self.content_dis = nets.build_content_discriminator(
            p, image_size, self.disentangler.content_ch, gain
        )
        self._init_attribute_means(int(p["attr_dim"]))

        kw = {
            "betas": (float(p["beta1"]), float(p["beta2"])),
            "weight_decay": float(p["weight_decay"]),
        }
        net = self.disentangler
        groups = net.groups()
        self._gen_params = _params(groups["content_encoder"] + groups["generator"])
        self._attr_params = _params(groups["attribute_encoder"])
        lr = float(p["lr"])
        self.opt_gen = torch.optim.Adam(self._gen_params, lr=lr, **kw)
        self.opt_attr = torch.optim.Adam(self._attr_params, lr=lr, **kw)
        self.opt_dis = torch.optim.Adam(_params([self.dis_enc, self.dis_rand]), lr=lr, **kw)
        self.opt_content_dis = torch.optim.Adam(
            self.content_dis.parameters(), lr=float(p["lr_content_dis"]), **kw
        )

    # ----------------------------------------------------------------- contract
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "gen": self.opt_gen,
            "attr": self.opt_attr,
            "dis": self.opt_dis,
            "content_dis": self.opt_content_dis,
        }

    def ema_modules(self) -> dict[str, nn.Module]:
        return {"disentangler": self.disentangler}

    def num_parameters(self) -> dict[str, int]:
        """Counts per official class: content encoder, attribute encoder, generator and the
        discriminators."""
        counts = {
            name: sum(p.numel() for p in _params(mods))
            for name, mods in self.disentangler.groups().items()
        }
        for name in ("dis_enc", "dis_rand", "content_dis"):
            counts[name] = sum(p.numel() for p in getattr(self, name).parameters())
        return counts

    # ----------------------------------------------------------------- training
    def _step_content_dis(self, zc: dict[str, torch.Tensor]) -> float:
        """One D_c update on detached content maps (domain a labelled 0, b 1), clipped."""
        loss = bce_logits(self.content_dis(zc["a"].detach()), 0.0) + bce_logits(
            self.content_dis(zc["b"].detach()), 1.0
        )
        self.opt_content_dis.zero_grad(set_to_none=True)
        loss.backward()
        clip = float(self.params["content_dis_clip"])
        nn.utils.clip_grad_norm_(self.content_dis.parameters(), clip)
        self.opt_content_dis.step()
        return float(loss.detach())

    def _forward(self, x: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Codes, translations (encoded and random attributes), reconstructions, re-encodings."""
        net = self.disentangler
        ms = float(self.params["lambda_mode_seeking"]) > 0
        zc = {m: net.content(x[m], m) for m in DOMAINS}
        za, mu, logvar = {}, {}, {}
        for m in DOMAINS:
            za[m], mu[m], logvar[m] = net.attribute(x[m], m)
        n = x["a"].shape[0]
        z_rand = [torch.randn(n, net.attr_dim, device=zc["a"].device) for _ in range(1 + ms)]
        out: dict[str, Any] = {"zc": zc, "mu": mu, "logvar": logvar, "z_rand": z_rand}
        fake_enc, self_rec, fake_rand = {}, {}, {}
        for j in DOMAINS:
            i = OTHER[j]
            contents = torch.cat([zc[i], zc[j]] + [zc[i]] * len(z_rand))
            attrs = torch.cat([za[j], za[j], *z_rand])
            parts = net.decode(contents, attrs, j).split(n)
            fake_enc[j], self_rec[j], fake_rand[j] = parts[0], parts[1], list(parts[2:])
        # cross cycle: content of i from the fake j, attribute of i from the fake i
        cross = {}
        for i in DOMAINS:
            j = OTHER[i]
            zc_back = net.content(fake_enc[j], j)
            za_back = net.attribute(fake_enc[i], i)[0]
            cross[i] = net.decode(zc_back, za_back, i)
        # latent regression: the posterior mean of the random-attribute fakes
        mu_rand = {m: net.attribute(fake_rand[m][0], m)[1] for m in DOMAINS}
        out.update(fake_enc=fake_enc, self_rec=self_rec, fake_rand=fake_rand, cross=cross)
        out["mu_rand"] = mu_rand
        return out

    def _generator_losses(
        self, x: dict[str, torch.Tensor], f: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """The losses of the two encoder/generator updates (see the module docstring)."""
        p = self.params
        l1 = F.l1_loss
        cadv = sum(bce_logits(self.content_dis(f["zc"][m]), 0.5) for m in DOMAINS)
        adv = sum(bce_logits(self.dis_enc[m](f["fake_enc"][m]), 1.0) for m in DOMAINS)
        kl = sum(nets.kl_to_prior(f["mu"][m], f["logvar"][m]) for m in DOMAINS)
        l2 = sum(f["zc"][m].pow(2).mean() for m in DOMAINS)
        cross = sum(l1(f["cross"][m], x[m]) for m in DOMAINS)
        self_rec = sum(l1(f["self_rec"][m], x[m]) for m in DOMAINS)
        first = (
            float(p["lambda_content_adv"]) * cadv
            + float(p["lambda_adv"]) * adv
            + float(p["lambda_kl"]) * kl
            + float(p["lambda_content_l2"]) * l2
            + float(p["lambda_cross_cycle"]) * cross
            + float(p["lambda_self_recon"]) * self_rec
        )
        z_rand = f["z_rand"]
        adv_rand = sum(
            bce_logits(self.dis_rand[m](fake), 1.0) for m in DOMAINS for fake in f["fake_rand"][m]
        )
        latent = sum(l1(f["mu_rand"][m], z_rand[0]) for m in DOMAINS)
        second = float(p["lambda_adv"]) * adv_rand + float(p["lambda_latent_reg"]) * latent
        logs = {
            "g_content_adv": cadv,
            "g_adv": adv,
            "kl": kl,
            "content_l2": l2,
            "cross_cycle": cross,
            "self_recon": self_rec,
            "g_adv_random": adv_rand,
            "latent_reg": latent,
        }
        if len(z_rand) > 1:
            dz = (z_rand[1] - z_rand[0]).abs().mean()
            ms = sum(
                1.0 / ((f["fake_rand"][m][1] - f["fake_rand"][m][0]).abs().mean() / dz + 1e-5)
                for m in DOMAINS
            )
            second = second + float(p["lambda_mode_seeking"]) * ms
            logs["mode_seeking"] = ms
        return first, second, {k: float(v.detach()) for k, v in logs.items()}

    @staticmethod
    def _set_grads(params: list[nn.Parameter], grads: list[torch.Tensor | None]) -> None:
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad

    def _gradients(
        self, loss: torch.Tensor, params: list[nn.Parameter], retain_graph: bool = False
    ) -> list[torch.Tensor | None]:
        """``d loss / d params`` through ``backward`` (into cleared ``.grad``), taken out."""
        self._set_grads(params, [None] * len(params))
        loss.backward(retain_graph=retain_graph)
        grads = [p.grad for p in params]
        self._set_grads(params, [None] * len(params))
        return grads

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        x_all = {m: batch[m].to(self.device) for m in DOMAINS}
        b = x_all["a"].shape[0]
        half = (b + 1) // 2
        x = {m: v[:half] for m, v in x_all.items()}  # encoded half
        real_rand = {m: (v[half:] if b > 1 else v) for m, v in x_all.items()}
        d_iter = int(self.params["d_iter"])
        if step % d_iter != d_iter - 1:
            zc = {m: self.disentangler.content(x[m], m) for m in DOMAINS}
            return {"d_content": self._step_content_dis(zc)}

        f = self._forward(x)
        # 1. image discriminators on detached fakes, then D_c
        loss_d = 0.0
        logs: dict[str, float] = {}
        for m in DOMAINS:
            d_enc = bce_logits(self.dis_enc[m](x[m]), 1.0) + bce_logits(
                self.dis_enc[m](f["fake_enc"][m].detach()), 0.0
            )
            d_rand = sum(
                bce_logits(self.dis_rand[m](real_rand[m]), 1.0)
                + bce_logits(self.dis_rand[m](fake.detach()), 0.0)
                for fake in f["fake_rand"][m]
            )
            logs[f"d_enc_{m}"] = float(d_enc.detach())
            logs[f"d_rand_{m}"] = float(d_rand.detach())
            loss_d = loss_d + d_enc + d_rand
        self.opt_dis.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_dis.step()
        logs["d_content"] = self._step_content_dis(f["zc"])

        # 2. encoders and generators: two updates from one forward pass; both gradients are
        # taken (by backward, so that multi-process training averages them) before either step
        frozen = [self.dis_enc, self.dis_rand, self.content_dis]
        for d in frozen:
            d.requires_grad_(False)
        first, second, g_logs = self._generator_losses(x, f)
        both = self._gen_params + self._attr_params
        g_first = self._gradients(first, both, retain_graph=True)
        g_second = self._gradients(second, self._gen_params)
        for d in frozen:
            d.requires_grad_(True)
        self._set_grads(both, g_first)
        self.opt_gen.step()
        self.opt_attr.step()
        self._set_grads(self._gen_params, g_second)
        self.opt_gen.step()
        self._set_grads(both, [None] * len(both))
        self._update_running_attributes(f["mu"])
        return logs | g_logs

    # -------------------------------------------------------------- translation
    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        src, dst = split_direction(direction)
        x = x.to(self.device)
        zc = self.disentangler.content(x, src, noise=False)
        za = self.target_attribute(dst, x.shape[0])
        return self.disentangler.decode(zc, za, dst).clamp(-1, 1)
