"""One weight initialisation for every network built from ``mrbench_methods.nets``.

The CycleGAN reference code initialises convolution and linear weights from N(0, 0.02) and
biases to zero (normalisation scales from N(1, 0.02)); SynDiff's non-diffusive generator inherits
the same rule. Keeping it in one function means a method cannot silently drift from it.
"""

from __future__ import annotations

from torch import nn

_CONV_OR_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)
_NORMS = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)


def init_weights(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """Initialise ``module`` in place: weights ~ N(0, gain), biases 0, norm scales ~ N(1, gain).

    Returns the module so that it can be used inline: ``net = init_weights(Net())``.
    """

    def init(m: nn.Module) -> None:
        if isinstance(m, _CONV_OR_LINEAR):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and getattr(m, "weight", None) is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    module.apply(init)
    return module
