"""Out-of-tree toy methods written by tests: a folder plugin and a simulated installed
distribution offering its method through the ``mrbench.methods`` entry points."""

from __future__ import annotations

from pathlib import Path

#: a complete (if simple) unpaired method: per direction a learned gain and offset, trained to
#: match the target domain's intensity mean and spread; it never sees a paired target. It is the
#: plugin author's example of the pair-neutral contract: batch keys "a"/"b", directions
#: "a_to_b"/"b_to_a" (split_direction gives the source domain), whatever contrasts the run pairs
TOY_METHOD = '''
"""A toy method written by a test, outside the repository."""

from typing import Any, ClassVar

import torch
from torch import nn

from mrbench_methods.base import TranslationMethod, register, split_direction


class ToyMethod(TranslationMethod):
    display_name = "{display}"
    citation = "{citation}"
    family = "toy"
    seconds_per_image_256 = 0.01
    defaults: ClassVar[dict[str, Any]] = {{"lr": 0.05}}
    tiny_params: ClassVar[dict[str, Any]] = {{}}

    def __init__(self, params=None, image_size=64):
        super().__init__(params, image_size)
        self.affine = nn.Linear(2, 2)
        self.opt = torch.optim.Adam(self.parameters(), lr=self.params["lr"])

    def _map(self, x, k):
        return torch.tanh(self.affine.weight[k, k] * x + self.affine.bias[k])

    def optimizers(self):
        return {{"affine": self.opt}}

    def train_step(self, batch, step):
        loss = 0.0
        for k, (src, dst) in enumerate((("a", "b"), ("b", "a"))):
            out = self._map(batch[src], k)
            loss = loss + (out.mean() - batch[dst].mean()) ** 2
            loss = loss + (out.std() - batch[dst].std()) ** 2
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {{"moments": float(loss.detach())}}

    @torch.no_grad()
    def translate(self, x, direction):
        src, _ = split_direction(direction)
        return self._map(x.to(self.device), 0 if src == "a" else 1).clamp(-1, 1)
'''


def write_folder_plugin(folder: Path, name: str = "toy_folder") -> Path:
    """One file in ``folder`` registering the toy under ``name`` with the decorator."""
    folder.mkdir(parents=True, exist_ok=True)
    text = TOY_METHOD.format(display="Toy folder method", citation="Folder et al., 2026")
    path = folder / f"{name}.py"
    path.write_text(text + f'\n\nregister("{name}")(ToyMethod)\n')
    return path


def write_installed_dist(site: Path, name: str = "toy_ep") -> Path:
    """A simulated installed distribution in ``site``: a package whose class is offered through
    the ``mrbench.methods`` entry point ``name`` (registered under it, no decorator)."""
    pkg = site / "mrbench_toy_pkg"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    text = TOY_METHOD.format(display="Toy entry-point method", citation="Entry et al., 2026")
    (pkg / "method.py").write_text(text)
    info = site / "mrbench_toy-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mrbench-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[mrbench.methods]\n{name} = mrbench_toy_pkg.method:ToyMethod\n"
    )
    return site
