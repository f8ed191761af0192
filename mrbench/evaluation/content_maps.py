"""Content maps of a disentangling method: the DisDiff paper's Fig. 3 and measures of their
modality invariance.

Any method plugin with the ``content_maps`` capability (``content_map(x, domain)``, domain ``"a"``
or ``"b"`` of the pair-neutral contract) is served; the DisDiff paper's claim (section 4.1,
Fig. 3) is that its content encoders extract *similar* content maps from the T1w and T2w images
of the same anatomy. A model trained on another contrast pair (its ``model.pt`` records the pair)
is shown on that pair's contrasts, its ``a`` contrast in the top row. This module

- draws a Fig. 3-like figure for one test subject: per modality (rows) the input slice, the
  first principal component of the content channels (a basis shared by both modalities, so the
  two rows are directly comparable) and the content channels with the largest variance (the same
  channels in both rows, one colour scale per column), with the Pearson correlation of the two
  content maps in the title;
- measures modality invariance on paired slices of the two contrasts (``a`` and ``b``): the
  *modality gap* (distance between the mean ``a`` and mean ``b`` content map relative to the
  spread within each contrast), the *paired distance ratio* (distance between the content maps of
  the same slice's two contrasts over the distance between maps of different slices: 1 = no
  correspondence, 0 = identical maps) and the held-out accuracy of a fresh linear probe (logistic
  regression) that tries to tell ``a`` content from ``b`` content.

``mrbench content-maps --model model.pt --store results/data/<ds>/slices/test --out fig3.png``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mrbench.domain import CONTRASTS  # noqa: E402
from mrbench.io import InputError, atomic_path  # noqa: E402
from mrbench.pairs import A, B, pair_from_meta  # noqa: E402
from mrbench.slices import SliceStore  # noqa: E402


# ------------------------------------------------------------------------ measures
def modality_gap(zc_a: torch.Tensor, zc_b: torch.Tensor) -> float:
    """``||mean(z_a) - mean(z_b)|| / mean(spread_a, spread_b)`` over maps ``(N, C, h, w)``.

    The spread of a modality is the root of the summed per-element variance across its maps.
    """
    a, b = zc_a.flatten(1).double(), zc_b.flatten(1).double()
    spread = 0.5 * (a.var(0).sum().sqrt() + b.var(0).sum().sqrt())
    return float((a.mean(0) - b.mean(0)).norm() / spread.clamp_min(1e-12))


def paired_distance_ratio(zc_a: torch.Tensor, zc_b: torch.Tensor) -> float:
    """Mean distance between the maps of the same slice over that between different slices."""
    a, b = zc_a.flatten(1).double(), zc_b.flatten(1).double()
    d = torch.cdist(a, b)
    n = d.shape[0]
    if n < 2:
        raise ValueError("paired_distance_ratio needs at least two paired slices")
    off = d[~torch.eye(n, dtype=torch.bool)]
    return float(d.diagonal().mean() / off.mean().clamp_min(1e-12))


def probe_accuracy(
    zc_a: torch.Tensor,
    zc_b: torch.Tensor,
    pooled: bool = True,
    epochs: int = 300,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> float:
    """Held-out accuracy of a fresh logistic-regression probe separating the two contrasts' content.

    Features are the per-channel spatial means (``pooled``) or the flattened maps, standardised
    with the training half's statistics. The slices are split in two halves by a seeded
    permutation (the same slice's two contrasts fall in the same half): train on one, test on the
    other. 0.5 means the probe cannot tell the modalities apart.
    """
    feats = [z.mean((2, 3)) if pooled else z.flatten(1) for z in (zc_a, zc_b)]
    n = feats[0].shape[0]
    if n < 4:
        raise ValueError("probe_accuracy needs at least four paired slices")
    x = torch.cat(feats).double()
    y = torch.cat([torch.ones(n), torch.zeros(n)]).double()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    half = perm[: n // 2]
    rest = perm[n // 2 :]
    train_idx, test_idx = torch.cat([half, half + n]), torch.cat([rest, rest + n])
    mu, sd = x[train_idx].mean(0), x[train_idx].std(0) + 1e-6
    xs = (x - mu) / sd
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    with torch.enable_grad():
        for _ in range(epochs):
            logits = xs[train_idx] @ w + b
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[train_idx])
            loss = loss + weight_decay * w.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = (xs[test_idx] @ w + b > 0).double()
    return float((pred == y[test_idx]).double().mean())


def invariance_report(zc_a: torch.Tensor, zc_b: torch.Tensor) -> dict[str, float]:
    """All three measures for paired content maps (row ``k`` of both is the same slice)."""
    return {
        "modality_gap": modality_gap(zc_a, zc_b),
        "paired_distance_ratio": paired_distance_ratio(zc_a, zc_b),
        "probe_accuracy_pooled": probe_accuracy(zc_a, zc_b, pooled=True),
        "probe_accuracy_flat": probe_accuracy(zc_a, zc_b, pooled=False),
    }


def offers_content_maps(model: Any) -> bool:
    """Whether the plugin offers the ``content_maps`` capability with the model's parameters."""
    offers = getattr(type(model), "capabilities_for", None)
    if offers is None or not hasattr(model, "content_map"):
        return False
    return "content_maps" in offers(getattr(model, "params", {}))


def content_maps_of(model: Any, x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Content maps of paired batches of the model's two domains (``x_a``: its pair's first
    contrast, ``x_b``: the second) from a model with ``content_map(x, domain)``."""
    if not offers_content_maps(model):
        raise InputError(
            f"method plugin {getattr(model, 'plugin_name', type(model).__name__)!r} "
            "does not offer content maps (capability 'content_maps' with these parameters)"
        )
    return model.content_map(x_a, A).cpu(), model.content_map(x_b, B).cpu()


def model_pair(model: Any) -> tuple[str, str]:
    """The contrast pair a loaded model was trained on (its ``model.pt`` meta; T1w/T2w for
    models written before pairs existed)."""
    return pair_from_meta(getattr(model, "model_info", {}).get("meta"))


# -------------------------------------------------------------------------- figure
def _pick_slice(store: SliceStore, subject: str | None, slice_index: int | None) -> int:
    subjects = store.subjects
    if subject is None:
        subject = subjects[0]
    elif subject not in subjects:
        raise InputError(f"{store.folder}: subject {subject!r} not in the store")
    rows = store.subject_rows(subject)
    if slice_index is None:
        return int(rows[len(rows) // 2])
    slices = store.index.loc[rows, "slice"].to_numpy()
    hit = rows[slices == slice_index]
    if hit.size == 0:
        raise InputError(f"{store.folder}: subject {subject!r} has no slice {slice_index}")
    return int(hit[0])


def plot_content_maps(
    model_path: str | Path,
    store_dir: str | Path,
    out_png: str | Path,
    subject: str | None = None,
    slice_index: int | None = None,
    channels: int = 4,
) -> dict[str, float]:
    """Fig. 3: content maps of one test slice's two contrasts (the model's pair, T1w and T2w for
    the paper's) side by side; returns statistics (``pair``: the contrasts shown).

    ``subject`` defaults to the store's first subject, ``slice_index`` to its middle slice.
    """
    from mrbench.checkpoint import load_model

    model = load_model(model_path, device="cpu")
    pair = model_pair(model)
    store = SliceStore(store_dir, pair=pair)
    row = _pick_slice(store, subject, slice_index)
    item = store[row]
    subject_id = str(store.index.loc[row, "subject"])
    z_index = int(store.index.loc[row, "slice"])
    names = [CONTRASTS[c] for c in pair]
    with torch.no_grad():
        a, b = content_maps_of(model, item["a"][None], item["b"][None])
    a, b = a[0].numpy(), b[0].numpy()  # (C, h, w)
    c = a.shape[0]
    both = np.concatenate([a.reshape(c, -1), b.reshape(c, -1)], axis=1)  # (C, 2hw)
    centred = both - both.mean(1, keepdims=True)
    # first principal component over channels, shared basis for both modalities
    u, _, _ = np.linalg.svd(centred, full_matrices=False)
    pc = u[:, 0] @ centred
    pc_a, pc_b = pc[: a[0].size].reshape(a.shape[1:]), pc[a[0].size :].reshape(a.shape[1:])
    top = np.argsort(-both.var(1))[: max(0, min(channels, c))]
    r = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    cols = 2 + len(top)
    fig, axes = plt.subplots(
        2, cols, figsize=(2.1 * cols, 4.3), squeeze=False, layout="constrained"
    )
    panels = [("input", item["a"][0].numpy(), item["b"][0].numpy(), "gray")]
    panels.append(("content PC1", pc_a, pc_b, "viridis"))
    panels += [(f"channel {k}", a[k], b[k], "viridis") for k in top]
    for j, (title, top_img, bottom_img, cmap) in enumerate(panels):
        lo = min(top_img.min(), bottom_img.min())
        hi = max(top_img.max(), bottom_img.max())
        for i, img in enumerate((top_img, bottom_img)):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            im = ax.imshow(np.rot90(img), cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            if i == 0:
                ax.set_title(title, fontsize=8)
        # one colour scale per column (shared by both contrasts), shown under the column
        bar = fig.colorbar(im, ax=axes[:, j], orientation="horizontal", fraction=0.05, pad=0.02)
        bar.set_label("intensity" if j == 0 else "content value", fontsize=7)
        bar.ax.tick_params(labelsize=6)
        axes[0, 0].set_ylabel(names[0], fontsize=9)
        axes[1, 0].set_ylabel(names[1], fontsize=9)
    name = getattr(model, "model_info", {}).get("method", model.plugin_name)
    fig.suptitle(
        f"{type(model).label()} [{name}]: content maps of {subject_id}, slice {z_index} "
        f"(Pearson r of {names[0]} vs {names[1]} content = {r:.3f})",
        fontsize=9,
    )
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png")
    plt.close(fig)
    return {"pearson_r": r, "row": row, "slice": z_index, "pair": pair}
