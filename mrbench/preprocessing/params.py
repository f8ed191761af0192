"""Parameters of the per-subject preprocessing pipeline (:class:`PreprocessParams`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PreprocessParams:
    """All parameters of the pipeline (documented in docs/datasets.md)."""

    skull_stripped: bool = False  #: inputs already skull-stripped: mask = non-zero T1
    registration: str = "rigid"  #: T2 -> T1 transform: "rigid" or "affine"
    n4: bool = False  #: N4 bias-field correction of both volumes
    target_spacing: float | None = None  #: output grid spacing (mm); None = the T1 grid
    # T2 -> T1
    t2_spacing: float = 1.5  #: finest registration resolution (mm)
    t2_iterations: tuple[int, ...] = (100, 50, 25)
    t2_mask_dilation_mm: float = 8.0
    interpolation: str = "bSpline"  #: ANTs interpolator for the T2 (linear blurs edges)
    seed: int = 1
    fov_threshold: float = 0.99  #: fraction of a voxel inside the T2 field of view
    # tissue classes
    tissue_classes: bool = True  #: write label.nii.gz (CSF/GM/WM by Atropos)
    tissue_iterations: int = 2  #: Atropos EM iterations after the k-means initialisation
    tissue_mrf: float = 0.1  #: Atropos MRF smoothing weight (1x1x1 neighbourhood)

    def __post_init__(self) -> None:
        if self.registration not in ("rigid", "affine"):
            raise ValueError(f"registration must be 'rigid' or 'affine', not {self.registration!r}")
