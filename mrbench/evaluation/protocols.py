"""The named metric protocols and the metric vocabulary (units, direction, region suffixes).

The definitions live apart from the arithmetic of :mod:`mrbench.evaluation.metrics` so that the
config checks, the tables and the notes can name protocols and metrics without loading the
compiled kernel; :mod:`mrbench.evaluation.metrics` re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass

#: unit of each metric (the region variants share the unit of their base metric)
UNITS = {"psnr": "dB", "ssim": "%", "ssim_gauss": "%", "mae": "a.u.", "msssim": "%"}
#: True where a larger value is better
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ssim_gauss": True, "mae": False, "msssim": True}
BASE_METRICS = ("psnr", "ssim", "ssim_gauss", "mae")
#: suffixes of the metrics restricted to a region: the brain mask, the lesion (label 4 inside the
#: brain) and the healthy tissue (brain minus lesion)
REGION_SUFFIXES = ("_brain", "_lesion", "_healthy")


@dataclass(frozen=True)
class Protocol:
    """How a metric value was computed; written next to every number."""

    name: str
    normalisation: str
    data_range: str
    mask: str  # "region": also _brain variants; "multiply": mask applied to images; "none"
    dims: int
    aggregation: str  # "subject" (per-subject means, then across subjects) or "slice"
    description: str

    def as_dict(self) -> dict[str, str | int]:
        return {
            "protocol": self.name,
            "normalisation": self.normalisation,
            "data_range": self.data_range,
            "mask": self.mask,
            "dims": self.dims,
            "aggregation": self.aggregation,
        }


PROTOCOLS: dict[str, Protocol] = {
    "max01": Protocol(
        "max01",
        "both / target slice max",
        "1",
        "region",
        2,
        "subject",
        "per slice, both images divided by the target slice maximum, data_range 1; "
        "whole slice and inside the brain mask (_brain)",
    ),
    "icon_mean": Protocol(
        "icon_mean",
        "each slice / its own mean",
        "target max",
        "multiply",
        2,
        "subject",
        "per slice, each image divided by its own mean, multiplied by the brain mask, "
        "data_range = target max (SelfRDB convention)",
    ),
    "syndiff": Protocol(
        "syndiff",
        "each slice / its own max",
        "1",
        "none",
        2,
        "slice",
        "per slice, each image divided by its own maximum, no mask, data_range 1, "
        "mean over slices (SynDiff test script)",
    ),
    "volume3d": Protocol(
        "volume3d",
        "both / target volume max",
        "1",
        "region",
        3,
        "subject",
        "per subject volume (stack of test slices), both divided by the target volume maximum, "
        "data_range 1, 3D SSIM windows; whole volume and inside the brain mask (_brain)",
    ),
    "brasyn": Protocol(
        "brasyn",
        "each volume clipped to its own 0.5/99.5 percentiles, scaled to [0, 1]",
        "1",
        "region",
        3,
        "subject",
        "per subject volume (stack of test slices), each image clipped to its own 0.5th/99.5th "
        "percentiles and scaled to [0, 1] (BraSyn challenge), data_range 1, 3D SSIM windows; "
        "whole volume, brain, lesion and healthy tissue",
    ),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown metric protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def base_metric(metric: str) -> str:
    """``ssim_lesion`` -> ``ssim``: the metric without its region suffix."""
    for suffix in REGION_SUFFIXES:
        if metric.endswith(suffix):
            return metric.removesuffix(suffix)
    return metric


def unit_of(metric: str) -> str:
    return UNITS[base_metric(metric)]


def higher_is_better(metric: str) -> bool:
    return HIGHER_IS_BETTER[base_metric(metric)]
