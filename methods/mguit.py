"""MGUIT (Jeong et al., CVPR 2021): memory-guided unsupervised image-to-image translation.

Follows the official code (``somijeong/MGUIT``, built on DRIT++); networks and the memory rules
are described in :mod:`mrbench_methods.nets.memory`. Domain A is the pair's ``a``, domain B its
``b``; the classes are the
tissue classes of the slice store's label maps (0 background, 1 CSF, 2 GM, 3 WM, 4 tumour).

Parts (official size; every width is a parameter, the demo shrinks them through the same code):

- content encoders E_c (DRIT++'s, :class:`mrbench_methods.nets.drit.ContentEncoder` per domain plus
  one
  shared :class:`~mrbench_methods.nets.resnet.ResnetBlock`), output L2-normalised over channels: the
  memory keys, 256 x H/4 x W/4 (9.01 M parameters for both domains);
- spatial style encoders E_s, one per domain: the memory values, 128 x H/4 x W/4 (1.49 M);
- the generator (11.65 M; 22.1 M generator side in all);
- one multi-scale image discriminator per domain (3 scales) and the content discriminator
  (27.2 M in all);
- the class-wise memory (buffers; items per class ``items_per_class``).

One training iteration (official ``train.py`` / ``model.py``; ``d_iter = 3``): on two of three
iterations only the content discriminator is updated (on fresh content maps); on the third:

1. encode ``c_A, c_B`` (unit vectors) and ``s_A, s_B``; the memory updates its items from both
   images' pixels of each class and reads, per pixel, values of both domains (``s_AA, s_AB`` for
   A's pixels, ``s_BA, s_BB`` for B's) and random values;
2. decode ``fake_BA = G_A(c_B, s_BA)``, ``fake_AA = G_A(c_A, s_AA)``, random-style fakes, and
   the same for B;
3. discriminators: D_A on real A (twice) vs ``fake_BA`` and the random-style fake (sigmoid +
   BCE summed over scales), likewise D_B; content discriminator (A content labelled 0, B content
   1) with gradient norm clipped to 5;
4. encoders and generator: image adversarial 1, content adversarial 1 (target 0.5), L2 on
   content and style maps 0.01, key consistency L1 1 (content of the translated image vs the
   source's), cross-cycle L1 50 (the translated image re-encoded and translated back, its style
   read from the updated memory with the source's class map), self-reconstruction L1 10, and the
   memory losses (key and value); one Adam step on E_c, E_s and G;
5. the updated memory replaces the old one.

Adam lr 1e-4, betas (0.5, 0.999), weight decay 1e-4 for every network, content discriminator lr
4e-5; linear decay over the second half of the official 1200 epochs (decay from 600), but at
most 500k full iterations (1.5 M steps: on IXI the cap comes first, so the rate stays constant);
batch 1; N(0, 0.02) initialisation of convolutions.

Test time (the official test code was never released): no class labels exist for a test image,
so the style map is read from the memory with the source content against the keys of every
class the memory was trained on (per pixel softmax over their items) and the target domain's
values; the image is then ``G_target(c_source, read)``. Items of a class that never occurred in
the training labels (IXI's tumour class) keep their random initial values and are not read. The
target image is never used.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mrbench.domain import TISSUE_CLASSES
from mrbench_methods.base import TranslationMethod, check_domain, register, split_direction
from mrbench_methods.drit import OFFICIAL_FULL_ITERATIONS
from mrbench_methods.nets.drit import ContentEncoder
from mrbench_methods.nets.memory import (
    DOMAINS,
    ClassMemory,
    ContentDiscriminator,
    MemoryGenerator,
    MultiScaleDiscriminator,
    StyleEncoder,
    class_masks,
)
from mrbench_methods.nets.resnet import ResnetBlock


def _gauss_init(module: nn.Module, gain: float = 0.02) -> None:
    """The official ``gaussian_weights_init``: conv weights ~ N(0, 0.02), biases untouched."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)


def _bce_logits(pred: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(pred.float(), torch.full_like(pred.float(), target))


class ContentEncoders(nn.Module):
    """Both domains' content encoders and the shared block; L2-normalised output."""

    def __init__(self, ch: int, n_down: int, n_res: int) -> None:
        super().__init__()
        self.enc = nn.ModuleDict({d: ContentEncoder(1, ch, n_down, n_res) for d in DOMAINS})
        self.out_ch = self.enc["a"].out_ch
        self.share = ResnetBlock(self.out_ch)

    def forward(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        return F.normalize(self.share(self.enc[domain](x)), dim=1)


@register("mguit")
class MGUIT(TranslationMethod):
    display_name = "MGUIT"
    citation = "Jeong et al., CVPR 2021"
    family = "disentangled"
    capabilities = frozenset({"content_maps"})
    needs_labels = True
    deviations: ClassVar[tuple[str, ...]] = (
        "Classes are brain tissues (background, CSF, GM, WM, tumour) from the preprocessing's "
        "tissue maps instead of driving-scene instance classes; items per class are a choice.",
        "Test time reads the memory over the keys of all classes seen in training (no labels at "
        "test time), not over classes absent from the training labels, whose items were never "
        "updated; the official test code was never released.",
        "Images are 1-channel MRI slices without resize, random crop or flips (the benchmark's "
        "fixed slice size).",
        "The trainer's step counter replaces the official per-epoch iteration index for the "
        "d_iter rhythm of content-discriminator-only updates.",
    )
    defaults: ClassVar[dict[str, Any]] = {
        "content_ch": 64,  # first conv width; keys are content_ch * 2**content_down = 256-d
        "content_down": 2,
        "content_res": 3,
        "style_ch": 64,  # values are 2 * style_ch = 128-d
        "gen_res": 3,
        "gen_noise": 0.1,
        "items_per_class": [4, 4, 4, 4, 4],  # background, CSF, GM, WM, tumour
        "dis_ch": 64,
        "dis_layers": 4,
        "dis_scales": 3,
        "dc_ch": 256,
        "dc_layers": 3,
        "dc_kernel": 7,
        "dc_final_kernel": 4,
        "lambda_adv": 1.0,
        "lambda_content_adv": 1.0,
        "lambda_cycle": 50.0,
        "lambda_self": 10.0,
        "lambda_key": 1.0,
        "lambda_l2": 0.01,
        "lambda_memory": 1.0,
        "d_iter": 3,
        "lr": 1e-4,
        "lr_content_dis": 4e-5,
        "beta1": 0.5,
        "beta2": 0.999,
        "weight_decay": 1e-4,
        "grad_clip_content_dis": 5.0,
    }
    tiny_params: ClassVar[dict[str, Any]] = {
        "content_ch": 4,
        "content_res": 1,
        "style_ch": 4,
        "gen_res": 1,
        "items_per_class": [2, 2, 2, 2, 1],
        "dis_ch": 4,
        "dis_layers": 2,
        "dis_scales": 2,
        "dc_ch": 8,
        "dc_layers": 1,
        "dc_kernel": 3,
        "dc_final_kernel": 1,
        "d_iter": 1,
    }
    training_defaults: ClassVar[dict[str, Any]] = {
        "lr_schedule": "linear",
        "lr_decay_start": 0.5,
        "batch_size": 1,
    }
    #: the official recipe (DRIT's training script with MGUIT's options): batch 1, 1200 epochs
    #: with linear decay over the second half, but at most 500k full iterations (one in
    #: ``d_iter`` = 3 steps: ``steps_cap`` 1.5 M steps; the schedule keeps its 1200-epoch
    #: length), the last weights. On IXI's 5,400 training slices the cap ends training after
    #: ~278 epochs, before the decay would start.
    recipes: ClassVar[dict[str, dict[str, Any]]] = {
        "official": {
            "batch_size": 1,
            "epochs": 1200,
            "steps_cap": OFFICIAL_FULL_ITERATIONS * 3,
            "lr_schedule": "linear",
            "lr_decay_start": 0.5,
            "select": "last",
        },
        "equal_budget": {"lr_schedule": "linear", "lr_decay_start": 0.5, "select": "last"},
    }

    def __init__(self, params: dict[str, Any] | None = None, image_size: int = 256) -> None:
        super().__init__(params, image_size)
        p = self.params
        if int(p["content_down"]) != 2:
            raise ValueError("mguit: content_down must be 2 (the generator upsamples twice)")
        if image_size % 4:
            raise ValueError(f"mguit: image_size must be a multiple of 4, got {image_size}")
        items = p["items_per_class"]
        if not isinstance(items, list | tuple) or len(items) != len(TISSUE_CLASSES):
            # a shorter list would merge the last classes (labels are clamped into the memory)
            n = len(items) if isinstance(items, list | tuple) else "no"
            raise ValueError(
                f"items_per_class: {n} entries, one per tissue class needed "
                f"({len(TISSUE_CLASSES)}: {', '.join(TISSUE_CLASSES.values())})"
            )
        self.enc_c = ContentEncoders(int(p["content_ch"]), 2, int(p["content_res"]))
        self.enc_s = nn.ModuleDict({d: StyleEncoder(1, int(p["style_ch"])) for d in DOMAINS})
        kdim, vdim = self.enc_c.out_ch, self.enc_s["a"].out_ch
        self.gen = MemoryGenerator(kdim, vdim, int(p["gen_res"]), 1, float(p["gen_noise"]))
        self.dis = nn.ModuleDict(
            {
                d: MultiScaleDiscriminator(
                    1, int(p["dis_ch"]), int(p["dis_layers"]), int(p["dis_scales"])
                )
                for d in DOMAINS
            }
        )
        self.dis_content = ContentDiscriminator(
            kdim,
            int(p["dc_ch"]),
            int(p["dc_layers"]),
            int(p["dc_kernel"]),
            int(p["dc_final_kernel"]),
        )
        self.memory = ClassMemory(list(p["items_per_class"]), kdim, vdim)
        for net in (self.enc_c, self.enc_s, self.gen, self.dis, self.dis_content):
            _gauss_init(net)
        self._build_optimizers()

    def _build_optimizers(self) -> None:
        p = self.params
        kw = {
            "betas": (float(p["beta1"]), float(p["beta2"])),
            "weight_decay": float(p["weight_decay"]),
        }
        lr = float(p["lr"])
        self.opt_G = torch.optim.Adam(
            itertools.chain(
                self.enc_c.parameters(), self.enc_s.parameters(), self.gen.parameters()
            ),
            lr=lr,
            **kw,
        )
        self.opt_D = torch.optim.Adam(self.dis.parameters(), lr=lr, **kw)
        self.opt_Dc = torch.optim.Adam(
            self.dis_content.parameters(), lr=float(p["lr_content_dis"]), **kw
        )

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D, "D_content": self.opt_Dc}

    @classmethod
    def components(cls, params: dict[str, Any]) -> dict[str, bool]:
        return {"Memory": True, "D_c": float(params.get("lambda_content_adv", 1.0)) > 0}

    # ---------------------------------------------------------------- pieces
    def content_map(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """Content features of a batch of images of ``domain`` (``"a"``/``"b"``)."""
        return self.enc_c(x, check_domain(domain))

    def _classes(self, batch: dict[str, torch.Tensor], size: tuple[int, int]) -> dict:
        out = {}
        for d in DOMAINS:
            key = f"label_{d}"
            if key not in batch:
                raise KeyError(f"{self.plugin_name}: training batch lacks {key!r} (needs_labels)")
            out[d] = class_masks(batch[key], self.memory.n_classes, size)
        return out

    def _dis_loss(self, net: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        loss = real.new_zeros(())
        for pr, pf in zip(net(real), net(fake.detach()), strict=True):
            loss = loss + _bce_logits(pr, 1.0) + _bce_logits(pf, 0.0)
        return loss

    def _gen_adv(self, net: nn.Module, fake: torch.Tensor) -> torch.Tensor:
        return sum(_bce_logits(p, 1.0) for p in net(fake))

    def _content_dis_step(self, cont: dict[str, torch.Tensor]) -> float:
        self.opt_Dc.zero_grad(set_to_none=True)
        loss = _bce_logits(self.dis_content(cont["a"].detach()), 0.0) + _bce_logits(
            self.dis_content(cont["b"].detach()), 1.0
        )
        loss.backward()
        nn.utils.clip_grad_norm_(
            self.dis_content.parameters(), float(self.params["grad_clip_content_dis"])
        )
        self.opt_Dc.step()
        return float(loss.detach())

    def _extra_losses(
        self, batch: dict[str, torch.Tensor], fakes: dict[str, torch.Tensor], classes: dict
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Hook for subclasses: more generator losses and discriminator updates."""
        return {}, {}

    # ---------------------------------------------------------------- training
    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        p = self.params
        x = {"a": batch["a"], "b": batch["b"]}
        if (step + 1) % int(p["d_iter"]) != 0:
            with torch.no_grad():
                cont = {d: self.enc_c(x[d], d) for d in DOMAINS}
            return {"D_content": self._content_dis_step(cont)}
        other = {"a": "b", "b": "a"}
        cont = {d: self.enc_c(x[d], d) for d in DOMAINS}
        sty = {d: self.enc_s[d](x[d]) for d in DOMAINS}
        classes = self._classes(batch, tuple(cont["a"].shape[2:]))
        mem = self.memory.step(cont, sty, classes)
        read, rand = mem["read"], mem["rand"]
        fake, self_rec, fake_rand = {}, {}, {}
        for d in DOMAINS:  # images of domain d
            o = other[d]
            fake[d] = self.gen(cont[o], read[(o, d)], d)  # o's content, d's values
            self_rec[d] = self.gen(cont[d], read[(d, d)], d)
            fake_rand[d] = self.gen(cont[o], rand[o], d)

        # discriminators
        for net in (self.dis, self.dis_content):
            net.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        loss_d = {}
        for d in DOMAINS:
            real = torch.cat([x[d], x[d]], 0)
            loss_d[d] = self._dis_loss(self.dis[d], real, torch.cat([fake[d], fake_rand[d]], 0))
            loss_d[d].backward()
        self.opt_D.step()
        out = {f"D_{d}": float(v.detach()) for d, v in loss_d.items()}
        out["D_content"] = self._content_dis_step(cont)
        extra_g, extra_out = self._extra_losses(batch, fake, classes)
        out.update(extra_out)

        # encoders and generator
        for net in (self.dis, self.dis_content):
            net.requires_grad_(False)
        losses: dict[str, torch.Tensor] = {}
        new_keys, new_values = mem["keys"], mem["values"]
        for d in DOMAINS:
            o = other[d]
            losses[f"adv_{d}"] = p["lambda_adv"] * self._gen_adv(
                self.dis[d], torch.cat([fake[d], fake_rand[d]], 0)
            )
            losses[f"content_adv_{d}"] = p["lambda_content_adv"] * _bce_logits(
                self.dis_content(cont[d]), 0.5
            )
            losses[f"l2_style_{d}"] = p["lambda_l2"] * sty[d].pow(2).mean()
            losses[f"l2_content_{d}"] = p["lambda_l2"] * cont[d].pow(2).mean()
            # d's image translated to o, re-encoded, read back with d's classes, decoded as d
            c_back = self.enc_c(fake[o], o)
            s_back = self.memory.read_classes(c_back, classes[d], d, new_keys, new_values)
            cycle = self.gen(c_back, s_back, d)
            losses[f"key_{d}"] = p["lambda_key"] * F.l1_loss(c_back, cont[d])
            losses[f"cycle_{d}"] = p["lambda_cycle"] * F.l1_loss(cycle, x[d])
            losses[f"self_{d}"] = p["lambda_self"] * F.l1_loss(self_rec[d], x[d])
        losses["mem_key"] = p["lambda_memory"] * mem["key_loss"]
        losses["mem_value"] = p["lambda_memory"] * mem["value_loss"]
        losses.update(extra_g)
        total = sum(losses.values())
        self.opt_G.zero_grad(set_to_none=True)
        total.backward()
        self.opt_G.step()
        for net in (self.dis, self.dis_content):
            net.requires_grad_(True)
        self.memory.commit(new_keys, new_values, mem["updated"])
        out.update({k: float(v.detach()) for k, v in losses.items()})
        out["G"] = float(total.detach())
        return out

    # ------------------------------------------------------------- translation
    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        src, dst = split_direction(direction)
        cont = self.enc_c(x, src)
        style = self.memory.read_all(cont, dst)
        return self.gen(cont, style, dst).clamp(-1, 1)
