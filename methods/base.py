"""The method contract: what every translation method offers the shared trainer.

A method is one module in ``methods/`` that defines a subclass of :class:`TranslationMethod` and
registers it with :func:`register`. The trainer owns the loop, seeding, validation, learning-rate
schedules, EMA, checkpoints and devices; the method owns only its networks, optimisers and losses.

Conventions shared by all methods:

- Images are float tensors of shape ``(B, 1, H, W)`` with values in ``[-1, 1]`` (0 in the
  slice store maps to -1, the background).
- A training batch is a dict with keys ``"t1"``, ``"t2"`` (images) and ``"mask_t1"``,
  ``"mask_t2"`` (brain masks, float 0/1, same shape). Under unpaired sampling, ``t1`` and ``t2``
  come from different, independently drawn slices.
- Directions are ``"t1_to_t2"`` and ``"t2_to_t1"``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn

DIRECTIONS = ("t1_to_t2", "t2_to_t1")

_REGISTRY: dict[str, type[TranslationMethod]] = {}


def register(name: str) -> Callable[[type[TranslationMethod]], type[TranslationMethod]]:
    """Class decorator: make a method available to configs under ``plugin: <name>``."""

    def wrap(cls: type[TranslationMethod]) -> type[TranslationMethod]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method plugin {name!r} is registered twice")
        cls.plugin_name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def registry() -> dict[str, type[TranslationMethod]]:
    """All registered plugins (importing ``methods`` registers the built-in ones)."""
    import methods  # noqa: F401  (side effect: registers the built-in methods)

    return dict(_REGISTRY)


def get_plugin(name: str) -> type[TranslationMethod]:
    plugins = registry()
    if name not in plugins:
        raise KeyError(f"unknown method plugin {name!r}; known: {', '.join(sorted(plugins))}")
    return plugins[name]


def split_direction(direction: str) -> tuple[str, str]:
    """``"t1_to_t2"`` -> ``("t1", "t2")``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {DIRECTIONS}")
    src, dst = direction.split("_to_")
    return src, dst


def _type_problem(default: Any, value: Any) -> str | None:
    """Why ``value`` cannot replace ``default`` (type, sign), or ``None`` when it can."""
    if default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "not true or false"
    if isinstance(value, bool) and isinstance(default, int | float):
        return f"a boolean, expected a number like the default {default!r}"
    if isinstance(default, int) and not isinstance(value, int):
        return f"not an integer (default {default!r})"
    if isinstance(default, float) and not isinstance(value, int | float):
        return f"not a number (default {default!r})"
    if isinstance(default, int | float) and default >= 0 and value < 0:
        return f"negative (default {default!r}; must be >= 0)"
    if isinstance(default, str) and not isinstance(value, str):
        return f"not a string (default {default!r})"
    if isinstance(default, list | tuple) and not isinstance(value, list | tuple):
        return f"not a list (default {list(default)!r})"
    if isinstance(default, dict) and not isinstance(value, dict):
        return "not a mapping"
    return None


class TranslationMethod(nn.Module, abc.ABC):
    """Base class of every translation method.

    Subclasses set :attr:`defaults` (every hyperparameter with its published value) and build
    their networks and optimisers in ``__init__`` from ``self.params``. The paper-size and the
    demo-size models go through the same code; only parameter values differ.
    """

    plugin_name: ClassVar[str] = ""
    #: Every hyperparameter with its published default; config ``params`` override these.
    defaults: ClassVar[dict[str, Any]] = {}
    #: False for methods with nothing to learn by gradient descent (identity, intensity maps):
    #: the trainer then calls :meth:`fit` once instead of the step loop.
    trainable: ClassVar[bool] = True
    #: Parameters for a tiny CPU model (16-32 px, few channels) used by the contract tests.
    tiny_params: ClassVar[dict[str, Any]] = {}
    #: True if the method must see co-registered pairs (t1 and t2 of the same slice) in training.
    needs_pairs: ClassVar[bool] = False

    # ------------------------------------------------------------------ traits
    # What the library needs to know about a method, said once here, never by config name in
    # the library (tables, report, cluster runtimes and figures read these).
    #: Name shown in tables and the report, e.g. ``"CycleGAN"`` (default: the plugin name).
    display_name: ClassVar[str] = ""
    #: Short citation for tables and the report, e.g. ``"Zhu et al., ICCV 2017"``.
    citation: ClassVar[str] = ""
    #: Family: ``"floor"`` (no learning), ``"gan"``, ``"diffusion"``, ``"disentangled"``,
    #: ``"disentangled+diffusion"`` or any other word a plugin finds apt.
    family: ClassVar[str] = "other"
    #: Measured training cost in GPU seconds per training image at 256 x 256 px (from
    #: ``benchmarks/train_throughput.py``); None: unknown (cluster runtimes use a cautious default).
    seconds_per_image_256: ClassVar[float | None] = None
    #: Optional capabilities, e.g. ``"content_maps"`` (offers ``content_map(x, modality)`` for a
    #: Fig. 3-style figure); any disentangling method can offer it.
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: True if the method is a reconstruction from its paper (no official code): tables say so.
    reconstruction: ClassVar[bool] = False
    #: True if training needs per-pixel tissue class labels (batch keys ``"label_t1"``,
    #: ``"label_t2"``); methods without it never see labels.
    needs_labels: ClassVar[bool] = False
    #: Deviations from the method's official recipe and code (adaptations to 1-channel MRI etc.),
    #: one sentence each; the recipe table lists them.
    deviations: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def components(cls, params: dict[str, Any]) -> dict[str, bool]:
        """Named on/off components of a variant from its *resolved* parameters, for ablation
        tables (e.g. ``{"Disentangled": True, "Diffusion": False, "D_c": False}``); empty for
        methods without switchable components."""
        return {}

    @classmethod
    def check_params(cls, params: dict[str, Any], image_size: int) -> None:
        """Raise ``ValueError("<key>: <problem>")`` for a parameter that cannot work, so that a
        config is refused when it is read rather than after hours of data jobs.

        The default, which every plugin gets for free: known keys only; each value of the type
        of its default (bool; int; int or float for a float; str; list; dict; anything for a
        ``None`` default); no negative number where the default is >= 0; then the constructor's
        own checks (e.g. size constraints for ``image_size``) run on the meta device, where even a
        paper-size model costs no memory or time. Plugins with further rules override this and
        call ``super().check_params(params, image_size)``.
        """
        for key, value in params.items():
            if key not in cls.defaults:
                known = ", ".join(sorted(cls.defaults)) or "none"
                raise ValueError(f"{key}: unknown parameter; known: {known}")
            problem = _type_problem(cls.defaults[key], value)
            if problem:
                raise ValueError(f"{key}: {value!r} is {problem}")
        try:
            with torch.device("meta"), torch.random.fork_rng(devices=[]):
                cls(dict(params), image_size=image_size)
        except ValueError as exc:
            raise ValueError(f"{exc} (for image_size {image_size})") from None
        except Exception:  # noqa: BLE001 - a constructor that cannot run on the meta device
            pass  # keeps its own checks for training time

    @classmethod
    def label(cls) -> str:
        """Display name, falling back to the plugin name."""
        return cls.display_name or cls.plugin_name

    def __init__(self, params: dict[str, Any] | None = None, image_size: int = 64) -> None:
        super().__init__()
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"method {self.plugin_name!r}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.defaults))}"
            )
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.image_size = image_size

    # ----------------------------------------------------------------- training
    @abc.abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """One optimisation step (all of the method's updates); returns named scalar losses."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimisers; the trainer attaches a learning-rate scheduler to each."""
        return {}

    def ema_modules(self) -> dict[str, nn.Module]:
        """Networks whose exponential moving average the trainer keeps and evaluates with."""
        return {}

    def fit(self, slices: Iterator[dict[str, torch.Tensor]]) -> None:
        """Non-trainable methods: fit once on the training slices (default: nothing to fit)."""

    def prepare_inference(self, slices: Iterator[dict[str, torch.Tensor]]) -> None:
        """Called once after training with the training slices, before any translation.

        For statistics a method needs at test time (e.g. DisDiff's mean attribute code); the
        results must live in buffers so that they are part of :meth:`state_dict`.
        """

    # -------------------------------------------------------------- translation
    @abc.abstractmethod
    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        """Translate a batch ``(B, 1, H, W)`` in ``[-1, 1]``; returns the same shape and range."""

    # ------------------------------------------------------------------ state
    def full_state(self) -> dict[str, Any]:
        """Networks, buffers and optimiser states: everything needed to resume exactly."""
        return {
            "model": self.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "extra": self.extra_state(),
        }

    def load_full_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["model"])
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        self.load_extra_state(state.get("extra", {}))

    def extra_state(self) -> dict[str, Any]:
        """Non-tensor state beyond networks and optimisers (e.g. a history pool) - tensors only
        or plain Python types, so that ``torch.load(weights_only=True)`` can read it back."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore what :meth:`extra_state` returned."""

    @property
    def sampling_steps(self) -> int:
        """Network evaluations per translation (1 for a feed-forward generator); diffusion
        methods override it. Reported in the efficiency table."""
        return 1

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def num_parameters(self) -> dict[str, int]:
        """Parameter count per top-level child network (for the efficiency table)."""
        return {
            name: sum(p.numel() for p in child.parameters())
            for name, child in self.named_children()
            if any(True for _ in child.parameters())
        }
