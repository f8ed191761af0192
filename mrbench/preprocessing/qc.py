"""Quality control of a preprocessed subject: the ``qc.png`` figure and the ``qc.json`` flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from mrbench.io import atomic_path

#: plausible adult brain volume (ml): a mask outside this range kept skull or scalp, or lost brain
BRAIN_VOLUME_ML = (900.0, 2000.0)
#: a T2 -> T1 registration that raised NMI by less than this and the gradient NCC by less than
#: :data:`MIN_NCC_GAIN` barely moved the images: it failed to start, or the headers were all
MIN_NMI_GAIN = 0.002
MIN_NCC_GAIN = 0.01


def qc_figure(
    t1: np.ndarray,
    t2: np.ndarray,
    mask: np.ndarray,
    spacing: np.ndarray,
    path: Path,
    title: str,
    labels: np.ndarray | None = None,
) -> None:
    """T2 edges (red) and mask outline (cyan) over T1 on three slices of each orientation;
    with ``labels``, a fourth row shows the tissue classes on the middle slices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = gradient_edges(t2, spacing)
    idx = np.argwhere(mask)
    lo, hi = (idx.min(0), idx.max(0)) if idx.size else (np.zeros(3, int), np.array(t1.shape) - 1)
    rows = 3 if labels is None else 4
    fig, axes = plt.subplots(rows, 3, figsize=(9, 3 * rows))
    for axis in range(3):
        for col, frac in enumerate((0.3, 0.5, 0.7)):
            k = int(lo[axis] + frac * (hi[axis] - lo[axis]))
            sl = [slice(None)] * 3
            sl[axis] = k
            a, e, m = (np.take(v, k, axis=axis).T for v in (t1, edges, mask))
            asp = [s for i, s in enumerate(spacing) if i != axis]
            ax = axes[axis, col]
            ax.imshow(a, cmap="gray", origin="lower", vmin=0, vmax=1, aspect=asp[1] / asp[0])
            ax.imshow(
                np.ma.masked_where(e == 0, e),
                cmap="autumn",
                origin="lower",
                alpha=0.8,
                aspect=asp[1] / asp[0],
            )
            ax.contour(m, levels=[0.5], colors="cyan", linewidths=0.6, origin="lower")
            ax.set_title(f"{'xyz'[axis]} = {k}", fontsize=8)
            ax.axis("off")
    if labels is not None:
        _label_row(axes[3], labels, lo, hi, spacing)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def _label_row(axes, labels: np.ndarray, lo, hi, spacing: np.ndarray) -> None:
    """Tissue classes (0 black, CSF blue, GM grey, WM white, tumour red) on the middle slices."""
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["black", "tab:blue", "0.55", "white", "tab:red"])
    for axis in range(3):
        k = int(lo[axis] + 0.5 * (hi[axis] - lo[axis]))
        asp = [s for i, s in enumerate(spacing) if i != axis]
        ax = axes[axis]
        ax.imshow(
            np.take(labels, k, axis=axis).T,
            cmap=cmap,
            vmin=0,
            vmax=4,
            origin="lower",
            interpolation="nearest",
            aspect=asp[1] / asp[0],
        )
        ax.set_title(f"tissue classes, {'xyz'[axis]} = {k}", fontsize=8)
        ax.axis("off")


def gradient_edges(v: np.ndarray, spacing: np.ndarray, q: float = 90) -> np.ndarray:
    """Binary edges: gradient magnitude above its ``q``-th percentile among non-zero voxels."""
    s = ndimage.gaussian_filter(v.astype(np.float32), 1.0 / np.asarray(spacing))
    g = np.sqrt(sum(gi**2 for gi in np.gradient(s, *spacing)))
    nz = g[v > 0]
    if nz.size == 0:
        return np.zeros_like(v, dtype=np.uint8)
    return (g > np.percentile(nz, q)).astype(np.uint8)


def qc_flags(qc: dict) -> list[str]:
    """Problems worth a look at ``qc.png``, one phrase each: a brain volume outside the adult
    range :data:`BRAIN_VOLUME_ML`, a registration that barely moved the similarity, a T2 field
    of view covering less than 90% of the brain."""
    flags = []
    lo, hi = BRAIN_VOLUME_ML
    vol = float(qc["brain_volume_ml"])
    if not lo <= vol <= hi:
        flags.append(
            f"brain volume {vol:.0f} ml outside the adult range {lo:.0f}-{hi:.0f} ml "
            "(mask keeps skull/scalp or misses brain)"
        )
    sim = qc["similarity"]
    d_nmi = sim["nmi_registered"] - sim["nmi_header"]
    d_ncc = sim["gradient_ncc_registered"] - sim["gradient_ncc_header"]
    if d_nmi <= 0 and d_ncc <= 0:
        flags.append(
            f"registration did not improve the similarity (NMI {d_nmi:+.4f}, gradient NCC "
            f"{d_ncc:+.4f})"
        )
    elif d_nmi < MIN_NMI_GAIN and d_ncc < MIN_NCC_GAIN:
        flags.append(
            f"registration barely moved the similarity (NMI {d_nmi:+.4f}, gradient NCC "
            f"{d_ncc:+.4f})"
        )
    if float(qc.get("t2_fov_brain_fraction", 1.0)) < 0.9:
        flags.append(f"T2 covers {qc['t2_fov_brain_fraction']:.0%} of the brain")
    return flags


#: a registered gradient NCC below this fraction of the dataset's median is flagged, whatever
#: the reason (a sheared or oblique T2 header the rigid step cannot undo, a failed start, a
#: motion-corrupted scan): a clean IXI subject reaches ~0.74, a sheared T2 ~0.28
RELATIVE_NCC = 0.6
#: fewer subjects than this give no typical value to compare with
MIN_SUBJECTS_RELATIVE = 3


def dataset_flags(records: list[dict]) -> dict[str, list[str]]:
    """Flags that need the whole dataset: subject -> a registration whose gradient NCC after
    registration is far below the median of the dataset's subjects (:data:`RELATIVE_NCC`).
    A per-subject check (:func:`qc_flags`) cannot see such a case where the registration still
    improved on the header alignment."""
    nccs = {
        q["subject"]: float(q["similarity"]["gradient_ncc_registered"])
        for q in records
        if np.isfinite(q["similarity"].get("gradient_ncc_registered", np.nan))
    }
    if len(nccs) < MIN_SUBJECTS_RELATIVE:
        return {}
    typical = float(np.median(list(nccs.values())))
    return {
        subject: [
            f"registration similarity far below the dataset's (gradient NCC {ncc:.2f}, median "
            f"{typical:.2f}): check the T2 header (shear, obliquity) or try --registration affine"
        ]
        for subject, ncc in nccs.items()
        if typical > 0 and ncc < RELATIVE_NCC * typical
    }
