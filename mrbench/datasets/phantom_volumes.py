"""The embedded ``phantom`` dataset: synthetic T1w/T2w/PDw/FLAIR subjects made offline from MNI152
maps.

The grey- and white-matter probability maps of the ICBM 2009a template ship inside the nilearn
wheel. For every synthetic subject this module

1. draws a smooth random deformation (a small affine - rotation, scaling, translation - composed
   with an elastic displacement field interpolated from a coarse random grid) and samples the tissue
   maps through it onto the output grid (``voxel_size`` mm, RAS orientation);
2. derives CSF as the remainder of the brain mask not covered by GM and WM;
3. adds what makes real T1w -> T2w translation more than an intensity mapping (see
   :data:`TISSUES`): per-subject white-matter lesions that are bright in T2w and nearly invisible
   in T1w, iron-rich deep grey matter (T2w-dark, T1w-bright), and pulsatile CSF flow voids in the
   deep ventricles that darken T2w only;
4. jitters the tissue relaxation times (T1, T2, PD) and the sequence timing (TR, TE) per subject;
5. computes each contrast with its signal equation (:data:`SEQUENCES`), mixing tissues by their
   partial-volume fractions: the spin-echo equation ``S = PD * (1 - exp(-TR/T1)) * exp(-TE/T2)``
   for T1w (short TR, short TE), T2w (long TR, long TE) and PD-weighted (long TR, short TE)
   images, and the inversion-recovery equation
   ``S = PD * |1 - 2 exp(-TI/T1) + exp(-TR/T1)| * exp(-TE/T2)`` for FLAIR, with the TI that nulls
   CSF, ``TI = T1_csf * ln(2 / (1 + exp(-TR/T1_csf)))``;
6. multiplies each contrast by its own smooth bias field and adds Rician noise.

All contrasts of one subject share the deformation, so they stay voxel-aligned, and share one
brain mask and a tissue class map (0 background, 1 CSF, 2 GM, 3 WM, 4 lesion: the class with the
largest partial-volume fraction, :func:`tissue_labels`). Everything up to T1w and T2w is drawn
from ``numpy.random.default_rng([seed, subject_index])``, so a subject is the same whatever the
number of subjects requested; PDw and FLAIR draw their timing jitter, bias and noise from their
own generators (``default_rng([seed, subject_index, k])``, :data:`EXTRA_STREAMS`), so adding them
leaves T1w and T2w bit for bit as they were, and each is the same whichever others are made.
The output is written like a downloaded dataset (``<subject>_{<contrast>,mask,label}.nii.gz``),
raw (unnormalised) intensities, so it goes through the same preprocessing and slicing code as
real data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from mrbench import domain
from mrbench.io import save_volume

#: Typical 1.5 T values (ms, PD relative), REFERENCES section 4, and three tissues a 1-D
#: intensity map cannot translate:
#:
#: - ``lesion``: a white-matter lesion with oedema-like prolonged T2 (300 ms) and a T1 (1000 ms)
#:   and PD that leave it within a few per cent of white matter in T1w (+1 % with these values)
#:   but 2.3x brighter in T2w - the classic "T2-hyperintense, T1-isointense" white-matter lesion;
#: - ``deep_gm``: iron-rich deep grey matter (globus pallidus, putamen), whose T2 is shortened by
#:   ferritin (about 65 ms at 1.5 T against 100 ms in cortex) and whose T1 is close to white
#:   matter's, so it is T1w-bright like WM but T2w-darker than WM;
#: - ``csf_flow``: CSF in the deep ventricles where pulsatile flow dephases the spin echo, the
#:   "flow void" of T2-weighted spin-echo images; T1w is unaffected (CSF is dark there anyway).
#:   ``t2w_factor`` scales its T2w signal only.
TISSUES = {
    "wm": {"t1": 790.0, "t2": 92.0, "pd": 0.69},
    "gm": {"t1": 1100.0, "t2": 100.0, "pd": 0.80},
    "csf": {"t1": 4000.0, "t2": 2000.0, "pd": 1.00},
    "lesion": {"t1": 1000.0, "t2": 300.0, "pd": 0.76},
    "deep_gm": {"t1": 780.0, "t2": 65.0, "pd": 0.78},
    "csf_flow": {"t1": 4000.0, "t2": 2000.0, "pd": 1.00},
}
#: contrast-specific signal factors that are not relaxation (flow voids). Only T2w: the void comes
#: from moving spins dephasing over the long echo time of a T2-weighted spin echo; at the PDw's
#: short echo time (15 ms) the dephasing is small, and FLAIR nulls all CSF anyway (its own flow
#: artefact, inflow of non-inverted CSF, is not modelled)
CONTRAST_FACTORS = {"t2": {"csf_flow": 0.3}}
#: tissues whose relaxation values another tissue's replace in one contrast: in FLAIR flowing CSF
#: is CSF (same fluid; its own jitter draw would leave it unsuppressed by the CSF-nulling TI)
RELAXATION_OF = {"flair": {"csf_flow": "csf"}}
#: the tissue class each generating tissue belongs to (tissue class maps, error maps)
TISSUE_CLASS = {
    "wm": "wm",
    "gm": "gm",
    "csf": "csf",
    "lesion": "lesion",
    "deep_gm": "gm",
    "csf_flow": "csf",
}
#: sequence timings (ms) at 1.5 T: spin echo for T1w, T2w and PDw (PDw: the T2w's long TR and a
#: short TE, like the first echo of a dual-echo acquisition); inversion recovery for FLAIR, whose
#: TI is set to null CSF (:func:`csf_null_ti`)
SEQUENCES = {
    "t1": {"tr": 500.0, "te": 12.0},
    "t2": {"tr": 4000.0, "te": 100.0},
    "pd": {"tr": 4000.0, "te": 15.0},
    "flair": {"tr": 9000.0, "te": 120.0},
}
#: the contrasts the phantom simulates
CONTRASTS = tuple(SEQUENCES)
#: contrasts drawn from the subject's main generator, in this order (the phantom's first release)
MAIN_STREAM = ("t1", "t2")
#: the other contrasts' generators: ``default_rng([seed, index, k])``
EXTRA_STREAMS = {"pd": 1, "flair": 2}


@dataclass(frozen=True)
class PhantomSettings:
    voxel_size: float = 1.0  #: output voxel size in mm (isotropic)
    elastic_mm: float = 3.0  #: standard deviation of the elastic displacement (mm)
    elastic_grid: int = 5  #: control points per axis of the elastic field
    rotation_deg: float = 5.0  #: max rotation about each axis (degrees)
    scale: float = 0.05  #: max relative scaling per axis
    translation_mm: float = 4.0  #: max translation per axis (mm)
    relaxation_jitter: float = 0.05  #: relative s.d. of T1, T2, PD per tissue and subject
    timing_jitter: float = 0.05  #: relative s.d. of TR and TE per subject
    bias: float = 0.15  #: amplitude of the multiplicative bias field (log scale)
    noise: float = 0.02  #: Rician noise s.d. relative to the 99th percentile brain signal
    lesions: int = 6  #: at most this many white-matter lesions per subject (0: none)
    lesion_radius_mm: tuple[float, float] = (6.0, 12.0)  #: range of the lesions' semi-axes
    deep_gm_mm: float = 18.0  #: GM deeper than this below the brain surface is iron-rich deep GM
    flow_void_mm: float = 22.0  #: CSF deeper than this may show T2w flow voids


def spin_echo(pd: float, t1: float, t2: float, tr: float, te: float) -> float:
    """Spin-echo signal ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` (T1w, T2w, PDw)."""
    return pd * (1 - np.exp(-tr / t1)) * np.exp(-te / t2)


def inversion_recovery(pd: float, t1: float, t2: float, tr: float, te: float, ti: float) -> float:
    """Magnitude inversion-recovery signal ``PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)``
    (FLAIR)."""
    return pd * np.abs(1 - 2 * np.exp(-ti / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)


def csf_null_ti(t1_csf: float, tr: float) -> float:
    """The inversion time at which the inversion-recovery signal of a tissue of longitudinal
    relaxation ``t1_csf`` is zero: ``T1 ln(2 / (1 + exp(-TR/T1)))``."""
    return float(t1_csf * np.log(2.0 / (1.0 + np.exp(-tr / t1_csf))))


def subject_ids(n: int) -> list[str]:
    return [f"phantom{i + 1:03d}" for i in range(n)]


@lru_cache(maxsize=1)
def _template() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """GM, WM fractions and brain mask (float32) of the MNI152 2009a template, and its affine."""
    from nilearn import datasets

    gm_img = nib.load(datasets.GM_MNI152_FILE_PATH)
    wm = np.asarray(nib.load(datasets.WM_MNI152_FILE_PATH).dataobj, dtype=np.float32) / 255.0
    gm = np.asarray(gm_img.dataobj, dtype=np.float32) / 255.0
    t1 = np.asarray(nib.load(datasets.MNI152_FILE_PATH).dataobj, dtype=np.float32)
    brain = ndimage.binary_fill_holes(t1 > 0.2 * t1.max()) | (gm + wm > 0.5)
    brain = ndimage.binary_opening(brain, iterations=1)
    total = np.maximum(gm + wm, 1.0)
    return gm / total, wm / total, brain.astype(np.float32), gm_img.affine


def _rotation(angles: np.ndarray) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _smooth_field(rng: np.random.Generator, grid: int, shape: tuple[int, ...]) -> np.ndarray:
    """A smooth random field on ``shape``: cubic interpolation of a ``grid``^3 Gaussian lattice."""
    coarse = rng.standard_normal((grid, grid, grid))
    factors = [s / grid for s in shape]
    field = ndimage.zoom(coarse, factors, order=3, mode="nearest")
    return field[: shape[0], : shape[1], : shape[2]]


#: class index of each tissue class in the label maps (background is 0; white-matter lesions
#: get the label BraTS tumours get)
TISSUE_LABELS = {**domain.TISSUE_LABELS, "lesion": domain.TUMOUR_LABEL}


def tissue_labels(fractions: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    """Class map from partial-volume fractions: the largest fraction inside ``mask``, else 0."""
    names = list(TISSUE_LABELS)
    stack = np.stack([fractions[t] for t in names], 0)
    codes = np.array([TISSUE_LABELS[t] for t in names], dtype=np.uint8)
    return np.where(mask > 0, codes[np.argmax(stack, 0)], 0).astype(np.uint8)


def _soft_depth(mask: np.ndarray, depth_mm: float, voxel_size: float) -> np.ndarray:
    """0 near the brain surface, 1 deeper than ``depth_mm``, linear over the 6 mm before it."""
    depth = ndimage.distance_transform_edt(mask) * voxel_size
    return np.clip((depth - (depth_mm - 6.0)) / 6.0, 0.0, 1.0).astype(np.float32)


def _lesion_map(
    rng: np.random.Generator, frac_wm: np.ndarray, settings: PhantomSettings
) -> np.ndarray:
    """Soft ellipsoids (1 inside, a one-voxel partial-volume rim) centred in pure white matter."""
    shape = frac_wm.shape
    vs = settings.voxel_size
    out = np.zeros(shape, dtype=np.float32)
    centres = np.argwhere(frac_wm > 0.9)
    if settings.lesions <= 0 or len(centres) == 0:
        return out
    for _ in range(int(rng.integers(1, settings.lesions + 1))):
        centre = centres[rng.integers(len(centres))]
        radii = rng.uniform(*settings.lesion_radius_mm, size=3) / vs  # in voxels
        lo = np.maximum(np.floor(centre - radii - 2), 0).astype(int)
        hi = np.minimum(np.ceil(centre + radii + 3), shape).astype(int)
        grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij")
        parts = zip(grids, centre, radii, strict=True)
        dist = np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in parts))
        profile = np.clip((1.0 - dist) * radii.min() + 0.5, 0.0, 1.0)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        out[box] = np.maximum(out[box], profile)
    return out


def _flow_void_map(
    rng: np.random.Generator, mask: np.ndarray, settings: PhantomSettings
) -> np.ndarray:
    """Where deep CSF dephases: a smooth random pattern inside the deep part of the brain."""
    deep = _soft_depth(mask, settings.flow_void_mm, settings.voxel_size)
    pattern = _smooth_field(rng, 4, mask.shape)
    return (deep * np.clip(2.0 * (pattern - 0.7), 0.0, 1.0)).astype(np.float32)


def make_subject(
    index: int,
    seed: int,
    settings: PhantomSettings,
    contrasts: tuple[str, ...] = MAIN_STREAM,
) -> dict[str, Any]:
    """One synthetic subject: ``{"t1", "t2", <other contrasts>, "mask", "label", "affine",
    "fractions"}`` on the output grid (``fractions``: per tissue class - ``wm``, ``gm``, ``csf``,
    ``lesion`` - its partial volume; ``label``: the class with the largest fraction,
    :data:`TISSUE_LABELS`). T1w and T2w are always made (the other contrasts' draws follow theirs
    in no generator); ``contrasts`` adds PDw and FLAIR."""
    unknown = [c for c in contrasts if c not in SEQUENCES]
    if unknown:
        raise ValueError(f"phantom: unknown contrast(s) {unknown}; known: {', '.join(SEQUENCES)}")
    rng = np.random.default_rng([seed, index])
    gm, wm, brain, tpl_affine = _template()
    shape, out_affine, fov = _output_grid(gm.shape, tpl_affine, settings.voxel_size)
    vox = _deformed_voxels(rng, shape, out_affine, fov, tpl_affine, settings)
    sample = {
        name: ndimage.map_coordinates(vol, vox, order=1, mode="constant", cval=0.0)
        for name, vol in (("gm", gm), ("wm", wm), ("brain", brain))
    }
    mask, fractions = _tissue_fractions(rng, sample, settings)
    tissue = {
        t: {k: v * (1 + settings.relaxation_jitter * rng.standard_normal()) for k, v in p.items()}
        for t, p in TISSUES.items()
    }
    out: dict[str, Any] = {"mask": mask.astype(np.uint8), "affine": out_affine}
    # per tissue class: the summed fractions of its generating tissues (for labels and checks)
    classes: dict[str, np.ndarray] = {}
    for t, f in fractions.items():
        c = TISSUE_CLASS[t]
        classes[c] = classes.get(c, 0.0) + f
    out["fractions"] = {c: f.astype(np.float32) for c, f in classes.items()}
    out["label"] = tissue_labels(out["fractions"], mask)
    for contrast in MAIN_STREAM:
        out[contrast] = _contrast_image(rng, contrast, tissue, fractions, mask, settings)
    for contrast in EXTRA_STREAMS:
        if contrast in contrasts:
            own = np.random.default_rng([seed, index, EXTRA_STREAMS[contrast]])
            out[contrast] = _contrast_image(own, contrast, tissue, fractions, mask, settings)
    return out


def _output_grid(
    template_shape: tuple[int, ...], tpl_affine: np.ndarray, vs: float
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """Shape, affine and field of view (mm) of the output grid: the template's field of view
    (197 x 233 x 189 mm) at the requested voxel size ``vs``."""
    fov = np.array(template_shape) * np.abs(np.diag(tpl_affine)[:3])
    shape = tuple(int(np.ceil(f / vs)) for f in fov)
    out_affine = np.diag([vs, vs, vs, 1.0])
    out_affine[:3, 3] = tpl_affine[:3, 3]
    return shape, out_affine, fov


def _deformed_voxels(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    out_affine: np.ndarray,
    fov: np.ndarray,
    tpl_affine: np.ndarray,
    settings: PhantomSettings,
) -> np.ndarray:
    """Template voxel coordinates (3, *shape) of the output voxels moved by a small random affine
    about the brain centre, then a random elastic displacement."""
    origin = tpl_affine[:3, 3]
    # world coordinates of the output voxels
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), 0).astype(np.float32)
    world = np.tensordot(out_affine[:3, :3], idx, axes=1) + origin[:, None, None, None]
    centre = origin + fov / 2
    rot = _rotation(rng.uniform(-1, 1, 3) * settings.rotation_deg)
    scl = np.diag(1 + rng.uniform(-1, 1, 3) * settings.scale)
    trans = rng.uniform(-1, 1, 3) * settings.translation_mm
    lin = rot @ scl
    moved = np.tensordot(lin, world - centre[:, None, None, None], axes=1)
    moved += (centre + trans)[:, None, None, None]
    for ax in range(3):
        moved[ax] += settings.elastic_mm * _smooth_field(rng, settings.elastic_grid, shape)
    # world -> template voxel indices
    inv = np.linalg.inv(tpl_affine)
    return np.tensordot(inv[:3, :3], moved, axes=1) + inv[:3, 3][:, None, None, None]


def _tissue_fractions(
    rng: np.random.Generator, sample: dict[str, np.ndarray], settings: PhantomSettings
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Brain mask and the partial-volume fraction of every generating tissue (:data:`TISSUES`)
    from the sampled template maps; lesions and flow voids are drawn here."""
    mask = sample["brain"] > 0.5
    frac_gm = np.clip(sample["gm"], 0, 1) * mask
    frac_wm = np.clip(sample["wm"], 0, 1) * mask
    frac_csf = np.clip(1.0 - frac_gm - frac_wm, 0, 1) * mask
    # tissues an intensity map cannot translate (see TISSUES): they take their share out of the
    # tissue they replace, so the fractions still sum to the brain mask
    frac_lesion = _lesion_map(rng, frac_wm, settings) * frac_wm
    frac_deep = _soft_depth(mask, settings.deep_gm_mm, settings.voxel_size) * frac_gm
    frac_flow = _flow_void_map(rng, mask, settings) * frac_csf
    fractions = {
        "gm": frac_gm - frac_deep,
        "wm": frac_wm - frac_lesion,
        "csf": frac_csf - frac_flow,
        "lesion": frac_lesion,
        "deep_gm": frac_deep,
        "csf_flow": frac_flow,
    }
    return mask, fractions


def _contrast_image(
    rng: np.random.Generator,
    contrast: str,
    tissue: dict[str, dict[str, float]],
    fractions: dict[str, np.ndarray],
    mask: np.ndarray,
    settings: PhantomSettings,
) -> np.ndarray:
    """One contrast: jittered sequence timing, the contrast's signal equation mixed by the tissue
    fractions, a smooth bias field and Rician noise, scaled to a scanner-like range (float32):
    ``1000 * image / p99`` with ``p99`` the 99th percentile of the noise-free biased signal in
    the brain."""
    seq = SEQUENCES[contrast]
    shape = mask.shape
    tr = seq["tr"] * (1 + settings.timing_jitter * rng.standard_normal())
    te = seq["te"] * (1 + settings.timing_jitter * rng.standard_normal())
    # FLAIR: the inversion time nulls this subject's CSF at this subject's TR
    ti = csf_null_ti(tissue["csf"]["t1"], tr) if contrast == "flair" else None
    alias = RELAXATION_OF.get(contrast, {})
    signal = np.zeros(shape, dtype=np.float64)
    for t in tissue:
        p = tissue[alias.get(t, t)]
        if ti is None:
            s = spin_echo(p["pd"], p["t1"], p["t2"], tr, te)
        else:
            s = inversion_recovery(p["pd"], p["t1"], p["t2"], tr, te, ti)
        s *= CONTRAST_FACTORS.get(contrast, {}).get(t, 1.0)
        signal += fractions[t] * s
    bias = np.exp(settings.bias * _smooth_field(rng, 3, shape))
    signal *= bias
    sigma = settings.noise * np.percentile(signal[mask], 99)
    noisy = np.sqrt(
        (signal + sigma * rng.standard_normal(shape)) ** 2
        + (sigma * rng.standard_normal(shape)) ** 2
    )
    # scale to a scanner-like integer range, as downloaded data would be
    return (1000.0 * noisy / np.percentile(signal[mask], 99)).astype(np.float32)


def write_phantom(
    out_dir: str | Path,
    n_subjects: int,
    seed: int,
    settings: PhantomSettings,
    only: list[str] | None = None,
    contrasts: tuple[str, ...] = MAIN_STREAM,
) -> list[Path]:
    """Write subjects as ``<id>_{<contrast>,mask,label}.nii.gz`` into ``out_dir`` (all, or
    ``only``), for each of ``contrasts`` (T1w and T2w by default)."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    written = []
    todo = [(i, s) for i, s in enumerate(subject_ids(n_subjects)) if not only or s in only]
    for i, sid in tqdm(todo, desc="phantom", unit="subject"):
        subj = make_subject(i, seed, settings, tuple(contrasts))
        for name in (*contrasts, "mask", "label"):
            written.append(
                save_volume(subj[name], subj["affine"], out_dir / f"{sid}_{name}.nii.gz")
            )
    return written
