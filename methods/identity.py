"""The ``identity`` floor: the source image itself is the prediction.

Any method worth publishing must beat it; it also shows how much of a metric comes from anatomy
alone (the brain outline) rather than from contrast.
"""

from __future__ import annotations

import torch

from mrbench_methods.base import TranslationMethod, register, split_direction


@register("identity")
class Identity(TranslationMethod):
    display_name = "Identity (source image)"
    citation = "no translation: the floor every method must beat"
    family = "floor"
    defaults: dict = {}
    trainable = False

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        return {}

    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        split_direction(direction)
        return x.clone()
