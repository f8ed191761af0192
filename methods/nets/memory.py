"""Networks and the class-wise key-value memory of MGUIT (Jeong et al., CVPR 2021).

MGUIT is built on the DRIT++ code: its content encoder is DRIT++'s (imported from
:mod:`mrbench_methods.nets.drit`), followed by an L2 normalisation over channels so that every
content
pixel is a unit vector, the *key* with which it addresses the memory. What differs from DRIT++
lives here:

- :class:`StyleEncoder`: a *spatial* style (attribute) encoder. 4x4 conv (64), two residual
  "basic blocks" with instance norm, LeakyReLU(0.2) and 2x average pooling (64 -> 128 -> 128),
  one block without pooling, a final LeakyReLU: a ``2 * ch`` x H/4 x W/4 map (128 channels at
  the official size), the memory's *values*.
- :class:`MemoryGenerator`: per-pixel style maps replace DRIT++'s tiled 8-d code. A residual block
  shared by both domains (with Gaussian noise of s.d. 0.1 in training), then, with the style map
  concatenated before every stage, three residual blocks (384 channels), a transposed conv with
  layer norm shared by both domains, a domain-specific transposed conv with layer norm, and a
  domain-specific 1x1 transposed conv with tanh. The style map is upsampled (nearest) with the
  features. 11.65 M parameters at the official size.
- :class:`MultiScaleDiscriminator`: DRIT++'s image discriminator: at each of 3 scales (3x3
  average pooling between them), 4 stride-2 4x4 convs 64 -> 512 with LeakyReLU (the official code
  never applies its instance norm) and a 1x1 conv to a patch of logits.
- :class:`ContentDiscriminator`: DRIT++'s content discriminator: three stride-2 7x7 convs and a
  4x4 conv at 256 channels with LeakyReLU (again without the intended instance norm), then a 1x1
  conv; every output position is one logit.
- :class:`ClassMemory`: the memory. Per class ``c`` a set of items, each a unit-norm key (256-d)
  and one value per domain (128-d), kept in *buffers*: they are state, not parameters, change by
  the update rule below and never by the optimiser, and are saved with the model.

Memory rules (official code, ``memory.py``), for the pixels ``q`` of class ``c`` in one batch:

- score ``S = q . k^T`` against the class's keys; ``S_pix`` softmax over pixels (per item),
  ``S_item`` softmax over items (per pixel).
- read: value of a pixel = ``S_item @ values[domain]`` for the domain wanted, detached.
- update (only when class ``c`` occurs in both domains' images): every pixel is assigned to its
  best item (argmax of ``S_item``); per item the ``S_pix``-weighted sum of its pixels' keys
  (normalised) and of their style vectors (instance-normalised over the value's channels) give
  ``dk_A, dk_B, dv_A, dv_B`` (zero for an item without pixels), and
  ``key <- normalise(0.25 dk_A + 0.25 dk_B + 0.5 key)``, ``value_A <- 0.5 dv_A + 0.5 value_A``,
  ``value_B <- 0.5 dv_B + 0.5 value_B``. The read of the same iteration uses the updated memory.
- losses (with the memory before the update): per class, for each domain,
  ``0.1 exp(-mean_p S_pix[p, g_p])`` with ``g_p`` the pixel's best item under ``S_pix`` (the
  official ``exp(nll_loss(softmax scores))``), on the keys (content) and on the values (style);
  plus a global key term of the same form over all classes' keys and all pixels.
- random styles: the same read with a random N(0, 1) value per item (for DRIT++'s random-style
  fakes).

At test time no class labels exist, so :meth:`ClassMemory.read_all` reads over the keys of
every class the memory has been trained on at once (softmax per pixel over their items); the
official test code was never released. A class absent from the training labels (IXI has no
tumour) is never updated, and its items keep their random initial keys and N(0, 1) values: read
with the others they would take a share of every pixel's weight (about 18 % with the initial
memory) and feed the generator values it never saw in training, so the buffer ``trained``
records which classes have had an update, and only their items are read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrbench.pairs import DOMAINS
from mrbench_methods.nets.drit import LayerNorm
from mrbench_methods.nets.resnet import ResnetBlock


def _up_block(ch_in: int, ch_out: int) -> nn.Sequential:
    """Stride-2 3x3 transposed conv, layer norm, ReLU (DRIT++'s ``ReLUINSConvTranspose2d``)."""
    return nn.Sequential(
        nn.ConvTranspose2d(ch_in, ch_out, 3, 2, padding=1, output_padding=1),
        LayerNorm(ch_out),
        nn.ReLU(inplace=True),
    )


class _StyleBlock(nn.Module):
    """Residual block: [IN, LReLU, 3x3 conv, IN, LReLU, 3x3 conv (+ 2x avg pool)] + shortcut."""

    def __init__(self, ch: int, out_ch: int, pool: bool) -> None:
        super().__init__()
        body: list[nn.Module] = [
            nn.InstanceNorm2d(ch),
            nn.LeakyReLU(0.2),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3),
            nn.InstanceNorm2d(ch),
            nn.LeakyReLU(0.2),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, out_ch, 3),
        ]
        short: list[nn.Module] = [nn.Conv2d(ch, out_ch, 1)]
        if pool:
            body.append(nn.AvgPool2d(2))
            short.insert(0, nn.AvgPool2d(2))
        self.body = nn.Sequential(*body)
        self.short = nn.Sequential(*short)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.short(x)


class StyleEncoder(nn.Module):
    """One domain's spatial style encoder: image -> ``(B, 2 ch, H/4, W/4)`` value map."""

    def __init__(self, in_ch: int = 1, ch: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ReflectionPad2d((1, 2, 1, 2)),
            nn.Conv2d(in_ch, ch, 4),
            _StyleBlock(ch, 2 * ch, pool=True),
            _StyleBlock(2 * ch, 2 * ch, pool=True),
            _StyleBlock(2 * ch, 2 * ch, pool=False),
            nn.LeakyReLU(0.2),
        )
        self.out_ch = 2 * ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MemoryGenerator(nn.Module):
    """MGUIT's generator for both domains: ``decode(content, style_map, domain)``."""

    def __init__(
        self,
        content_ch: int = 256,
        vdim: int = 128,
        n_res: int = 3,
        out_ch: int = 1,
        noise: float = 0.1,
    ) -> None:
        super().__init__()
        self.noise = noise
        self.share = ResnetBlock(content_ch)
        ch = content_ch + vdim
        self.res = nn.Sequential(*[ResnetBlock(ch) for _ in range(n_res)])
        ch += vdim
        self.up1 = _up_block(ch, ch // 2)
        ch = ch // 2 + vdim
        self.up2 = nn.ModuleDict({d: _up_block(ch, ch // 2) for d in DOMAINS})
        ch = ch // 2 + vdim
        self.out = nn.ModuleDict(
            {d: nn.Sequential(nn.ConvTranspose2d(ch, out_ch, 1), nn.Tanh()) for d in DOMAINS}
        )

    def forward(self, content: torch.Tensor, style: torch.Tensor, domain: str) -> torch.Tensor:
        h = content
        if self.training and self.noise > 0:
            # drawn in the contiguous order, so a channels-last map gets the same noise
            h = h + torch.randn_like(h, memory_format=torch.contiguous_format) * self.noise
        h = self.share(h)
        h = self.res(torch.cat([h, style], 1))
        h = self.up1(torch.cat([h, style], 1))
        style = F.interpolate(style, scale_factor=2, mode="nearest")
        h = self.up2[domain](torch.cat([h, style], 1))
        style = F.interpolate(style, scale_factor=2, mode="nearest")
        return self.out[domain](torch.cat([h, style], 1))


class MultiScaleDiscriminator(nn.Module):
    """DRIT++'s image discriminator; returns one logit map per scale."""

    def __init__(self, in_ch: int = 1, ch: int = 64, n_layers: int = 4, n_scales: int = 3) -> None:
        super().__init__()
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        nets = []
        for _ in range(n_scales):
            layers: list[nn.Module] = []
            width, out = in_ch, ch
            for _ in range(n_layers):
                layers += [
                    nn.ReflectionPad2d(1),
                    nn.Conv2d(width, out, 4, stride=2),
                    nn.LeakyReLU(0.01, inplace=True),
                ]
                width, out = out, out * 2
            layers.append(nn.Conv2d(width, 1, 1))
            nets.append(nn.Sequential(*layers))
        self.nets = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, net in enumerate(self.nets):
            if i:
                x = self.down(x)
            outs.append(net(x))
        return outs


class ContentDiscriminator(nn.Module):
    """DRIT++'s content discriminator: content map -> flat vector of logits (target: domain)."""

    def __init__(
        self,
        content_ch: int = 256,
        ch: int = 256,
        n_layers: int = 3,
        kernel: int = 7,
        final: int = 4,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = content_ch
        for _ in range(n_layers):
            layers += [
                nn.ReflectionPad2d(1),
                nn.Conv2d(width, ch, kernel, stride=2),
                nn.LeakyReLU(0.01, inplace=True),
            ]
            width = ch
        layers += [nn.Conv2d(ch, ch, final), nn.LeakyReLU(0.01, inplace=True), nn.Conv2d(ch, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, zc: torch.Tensor) -> torch.Tensor:
        return self.net(zc).flatten()


def class_masks(labels: torch.Tensor, n_classes: int, size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel class index ``(B, h, w)`` at the content resolution from full-size labels
    ``(B, 1, H, W)``: majority vote in each block (one-hot area pooling, argmax)."""
    lab = labels[:, 0].long().clamp(0, n_classes - 1)
    onehot = F.one_hot(lab, n_classes).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(onehot, size).argmax(1)


def _inorm_rows(v: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Instance norm of each row over its entries (the official ``InstanceNorm1d`` on (m, 1, d))."""
    mean = v.mean(1, keepdim=True)
    var = v.var(1, unbiased=False, keepdim=True)
    return (v - mean) / torch.sqrt(var + eps)


class ClassMemory(nn.Module):
    """Class-wise key-value memory held in buffers (see the module docstring for the rules)."""

    def __init__(self, items_per_class: list[int] | tuple[int, ...], kdim: int, vdim: int) -> None:
        super().__init__()
        sizes = [int(n) for n in items_per_class]
        if not sizes or min(sizes) < 1:
            raise ValueError(f"items_per_class must be positive integers, got {items_per_class}")
        self.sizes = sizes
        self.kdim, self.vdim = kdim, vdim
        n = sum(sizes)
        owner = torch.cat([torch.full((s,), c, dtype=torch.long) for c, s in enumerate(sizes)])
        self.register_buffer("owner", owner)
        self.register_buffer("keys", F.normalize(torch.randn(n, kdim), dim=1))
        self.register_buffer("values", torch.randn(len(DOMAINS), n, vdim))
        #: classes that have had at least one update (only their items are read at test time)
        self.register_buffer("trained", torch.zeros(len(sizes), dtype=torch.bool))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # a model saved before ``trained`` existed read every class: keep that reading
        state_dict.setdefault(prefix + "trained", torch.ones_like(self.trained))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def after_buffer_average(self) -> None:
        """Keys are unit vectors: after a data-parallel job averages the memory over its
        processes (:meth:`mrbench.training.distributed.DistContext.sync_buffers`), renormalise."""
        self.keys.copy_(F.normalize(self.keys, dim=1))

    @property
    def n_classes(self) -> int:
        return len(self.sizes)

    def _slice(self, c: int) -> slice:
        start = sum(self.sizes[:c])
        return slice(start, start + self.sizes[c])

    # ------------------------------------------------------------------ read
    @staticmethod
    def _pixels(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])

    def read_all(self, content: torch.Tensor, domain: str) -> torch.Tensor:
        """Test-time read without labels: per pixel, softmax over the keys of every *trained*
        class's items (all items while no class has been trained, e.g. an untrained model)."""
        b, _, h, w = content.shape
        q = self._pixels(content)
        use = self.trained[self.owner] if bool(self.trained.any()) else self.owner >= 0
        weights = torch.softmax(q @ self.keys[use].t(), dim=1)
        out = weights @ self.values[DOMAINS.index(domain)][use]
        return out.reshape(b, h, w, self.vdim).permute(0, 3, 1, 2)

    def read_classes(
        self,
        content: torch.Tensor,
        classes: torch.Tensor,
        domain: str,
        keys: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per pixel, softmax over the items of the pixel's own class; target-domain values."""
        keys = self.keys if keys is None else keys
        values = self.values if values is None else values
        b, _, h, w = content.shape
        q = self._pixels(content)
        cls = classes.reshape(-1)
        out = q.new_zeros(q.shape[0], self.vdim)
        v = values[DOMAINS.index(domain)]
        for c in range(self.n_classes):
            idx = torch.nonzero(cls == c).squeeze(1)
            if idx.numel() == 0:
                continue
            s = self._slice(c)
            weights = torch.softmax(q[idx] @ keys[s].t(), dim=1)
            out[idx] = weights @ v[s]
        return out.detach().reshape(b, h, w, self.vdim).permute(0, 3, 1, 2)

    # ---------------------------------------------------------------- training
    def _update_terms(
        self, q: torch.Tensor, sty: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-item key and value updates from one domain's pixels of one class."""
        score = q @ keys.t()
        s_pix = torch.softmax(score, dim=0)
        best = torch.softmax(score, dim=1).argmax(1)
        w = s_pix.gather(1, best[:, None])
        dk = q.new_zeros(keys.shape).index_add_(0, best, w * q)
        dv = q.new_zeros(keys.shape[0], sty.shape[1]).index_add_(0, best, w * sty)
        return F.normalize(dk, dim=1), _inorm_rows(dv)

    def step(
        self,
        cont: dict[str, torch.Tensor],
        sty: dict[str, torch.Tensor],
        classes: dict[str, torch.Tensor],
    ) -> dict[str, object]:
        """One training iteration of the memory: update, read, losses.

        ``cont``/``sty``/``classes`` map each domain to its content map (unit vectors), style
        map and class index map (all at the content resolution). Returns the new keys and values
        and the classes updated (``updated``, a bool per class), to be committed with
        :meth:`commit` after the optimiser step, the read style maps
        ``read[(src, dst)]`` (values of domain ``dst`` addressed by ``src``'s content), random
        style maps ``rand[src]`` and the key and value losses.
        """
        shape = cont["a"].shape
        b, _, h, w = shape
        q = {d: self._pixels(cont[d]) for d in DOMAINS}
        s = {d: self._pixels(sty[d]) for d in DOMAINS}
        cls = {d: classes[d].reshape(-1) for d in DOMAINS}
        new_keys = self.keys.clone()
        new_values = self.values.clone()
        read = {(a, t): q[a].new_zeros(q[a].shape[0], self.vdim) for a in DOMAINS for t in DOMAINS}
        rand = {d: q[d].new_zeros(q[d].shape[0], self.vdim) for d in DOMAINS}
        gathers = {
            d: torch.zeros(q[d].shape[0], dtype=torch.long, device=q[d].device) for d in DOMAINS
        }
        key_loss = q["a"].new_zeros(())
        value_loss = q["a"].new_zeros(())
        updated = torch.zeros_like(self.trained)
        for c in range(self.n_classes):
            sl = self._slice(c)
            idx = {d: torch.nonzero(cls[d] == c).squeeze(1) for d in DOMAINS}
            present = all(idx[d].numel() > 0 for d in DOMAINS)
            keys, values = self.keys[sl], self.values[:, sl]
            if present:
                updated[c] = True
                dk, dv = {}, {}
                for d in DOMAINS:
                    dk[d], dv[d] = self._update_terms(
                        q[d][idx[d]].detach(), s[d][idx[d]].detach(), keys
                    )
                new_keys[sl] = F.normalize(0.25 * dk["a"] + 0.25 * dk["b"] + 0.5 * keys, dim=1)
                for i, d in enumerate(DOMAINS):
                    new_values[i, sl] = 0.5 * dv[d] + 0.5 * values[i]
            rk, rv = new_keys[sl], new_values[:, sl]
            noise = torch.randn(len(DOMAINS), rk.shape[0], self.vdim, device=rk.device)
            for i, d in enumerate(DOMAINS):
                if idx[d].numel() == 0:
                    continue
                qd = q[d][idx[d]]
                s_item = torch.softmax(qd.detach() @ rk.t(), dim=1)
                for j, t in enumerate(DOMAINS):
                    read[(d, t)][idx[d]] = s_item @ rv[j]
                rand[d][idx[d]] = s_item @ noise[i]
                # memory losses, on the memory before the update (keys and values are constants)
                s_pix = torch.softmax(qd @ keys.t(), dim=0)
                g = s_pix.detach().argmax(1)
                gathers[d][idx[d]] = g + sl.start
                if present:
                    key_loss = key_loss + 0.1 * torch.exp(-s_pix.gather(1, g[:, None]).mean())
                    sv = torch.softmax(s[d][idx[d]] @ values[i].t(), dim=0)
                    value_loss = value_loss + 0.1 * torch.exp(-sv.gather(1, g[:, None]).mean())
        for d in DOMAINS:  # global key term over every class's items
            s_all = torch.softmax(q[d] @ self.keys.t(), dim=0)
            key_loss = key_loss + 0.1 * torch.exp(-s_all.gather(1, gathers[d][:, None]).mean())

        def as_map(x: torch.Tensor) -> torch.Tensor:
            return x.detach().reshape(b, h, w, self.vdim).permute(0, 3, 1, 2)

        return {
            "keys": new_keys,
            "values": new_values,
            "updated": updated,
            "read": {k: as_map(v) for k, v in read.items()},
            "rand": {k: as_map(v) for k, v in rand.items()},
            "key_loss": key_loss,
            "value_loss": value_loss,
        }

    @torch.no_grad()
    def commit(
        self, keys: torch.Tensor, values: torch.Tensor, updated: torch.Tensor | None = None
    ) -> None:
        """Replace the memory by a step's new keys and values; ``updated`` (the step's
        ``updated``) marks classes as trained."""
        self.keys.copy_(keys)
        self.values.copy_(values)
        if updated is not None:
            self.trained |= updated.to(self.trained.device)
