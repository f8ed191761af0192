"""The method contract: what every translation method offers the shared trainer.

A method is one module in ``methods/`` that defines a subclass of :class:`TranslationMethod` and
registers it with :func:`register`. The trainer owns the loop, seeding, validation, learning-rate
schedules, EMA, checkpoints and devices; the method owns only its networks, optimisers and losses.

Conventions shared by all methods:

- Images are float tensors of shape ``(B, 1, H, W)`` with values in ``[-1, 1]`` (0 in the
  slice store maps to -1, the background).
- The contract is pair-neutral (:mod:`mrbench.pairs`): a method never knows which two
  contrasts it translates between. It sees two domains, ``"a"`` and ``"b"``
  (:data:`~mrbench.pairs.DOMAINS`); the run's pair says which contrast each is (the first of a
  configured pair, e.g. T2w of ``[t2, flair]``, is ``a``).
- A training batch is a :class:`mrbench.pairs.Batch` (a dict) with keys ``"a"``, ``"b"``
  (images) and ``"mask_a"``, ``"mask_b"`` (brain masks, float 0/1, same shape); methods with
  :attr:`TranslationMethod.needs_labels` also get ``"label_a"``, ``"label_b"``.
  ``batch.contrasts`` names the pair (e.g. ``("t2", "flair")``), for logs only. Under unpaired
  sampling (every method but those with the :attr:`TranslationMethod.paired` trait), ``a`` and
  ``b`` come from different, independently drawn slices.
- Directions are ``"a_to_b"`` and ``"b_to_a"`` (:data:`~mrbench.pairs.NEUTRAL_DIRECTIONS`,
  exported here as :data:`DIRECTIONS`); :func:`split_direction` gives their domains.
  ``content_map(x, domain)`` takes ``"a"`` or ``"b"``. The library maps directions to contrast
  names (``t2_to_flair``) wherever a user reads them, and model files record their pair.
- A plugin written against the earlier T1/T2 contract (``batch["t1"]``,
  ``direction == "t1_to_t2"``) fails with one line naming this contract
  (:class:`mrbench.pairs.ContractError`). Its saved weights load: state-dict keys that spell
  ``t1``/``t2`` are renamed to ``a``/``b`` (:func:`upgrade_legacy_names`).
"""

from __future__ import annotations

import abc
import os
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from typing import Any, ClassVar

import torch
from torch import nn

from mrbench import pairs
from mrbench.config import plugins as _plugins
from mrbench.pairs import DOMAINS, NEUTRAL_DIRECTIONS, ContractError

#: the directions of the method contract (neutral: ``a_to_b``, ``b_to_a``), for plugins
DIRECTIONS = NEUTRAL_DIRECTIONS

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


#: the entry-point group through which an installed package offers method plugins
ENTRY_POINT_GROUP = "mrbench.methods"
#: environment variable: folders (``os.pathsep``-separated) whose ``.py`` files are plugins; the
#: workflow sets it from the config's ``plugin_paths`` so that every job sees the same plugins
PLUGIN_PATH_ENV = _plugins.PLUGIN_PATH_ENV

_ENTRY_POINTS_LOADED = False
#: entry points of :data:`ENTRY_POINT_GROUP` that failed to load: name -> why (one line). A broken
#: third-party package then stops only what needs its plugin, not every command
_BROKEN_ENTRY_POINTS: dict[str, str] = {}


def load_plugin_paths(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Import every ``.py`` file (not starting with ``_``) of each folder, once per file.

    A user's own methods live outside this package: one file per method in a folder named in the
    config's ``plugin_paths`` (or in ``MRBENCH_PLUGIN_PATH``). Returns the names of the plugins
    the files registered. The files are imported by
    :func:`mrbench.config.plugins.load_plugin_folders`,
    the importer dataset kinds use too, so a folder holding both kinds of plugin is imported once.
    A missing folder or a file that fails to import raises
    :class:`mrbench.config.plugins.PluginError`
    (an ``ImportError``) naming it.
    """
    import mrbench_methods  # noqa: F401  (built-in plugins first: a clash then names the user's file)

    before = set(_REGISTRY)
    _plugins.load_plugin_folders(paths, what="method plugin")
    return sorted(set(_REGISTRY) - before)


def _load_entry_points() -> None:
    """Plugins of installed packages: each entry point of :data:`ENTRY_POINT_GROUP` names a
    module (importing it registers its methods) or a :class:`TranslationMethod` subclass (then
    registered under the entry point's name unless its decorator already did). One that fails
    to import is recorded, not raised: only a command that needs its plugin fails, naming it
    (:func:`get_plugin`)."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - any error of a third-party import
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            _BROKEN_ENTRY_POINTS[ep.name] = (
                f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP} failed to "
                f"load ({reason})"
            )
            continue
        if (
            isinstance(obj, type)
            and issubclass(obj, TranslationMethod)
            and "plugin_name" not in obj.__dict__
        ):
            register(ep.name)(obj)


def registry() -> dict[str, type[TranslationMethod]]:
    """All registered plugins: the built-in ones (importing ``methods``), those of installed
    packages (entry-point group ``mrbench.methods``), those in the folders of
    ``MRBENCH_PLUGIN_PATH`` and any loaded with :func:`load_plugin_paths`."""
    import mrbench_methods  # noqa: F401  (side effect: registers the built-in methods)

    _load_entry_points()
    load_plugin_paths(_plugins.env_plugin_paths())
    return dict(_REGISTRY)


def unavailable_plugins() -> str:
    """The entry points that failed to load, for an "unknown plugin" message ('' if none)."""
    if not _BROKEN_ENTRY_POINTS:
        return ""
    return "; not loaded: " + "; ".join(
        _BROKEN_ENTRY_POINTS[k] for k in sorted(_BROKEN_ENTRY_POINTS)
    )


def get_plugin(name: str) -> type[TranslationMethod]:
    plugins = registry()
    if name not in plugins:
        if name in _BROKEN_ENTRY_POINTS:
            raise KeyError(f"method plugin {name!r}: {_BROKEN_ENTRY_POINTS[name]}")
        known = ", ".join(sorted(plugins))
        raise KeyError(f"unknown method plugin {name!r}; known: {known}{unavailable_plugins()}")
    return plugins[name]


class RenamedParameterWarning(UserWarning):
    """A config or saved model used a parameter's old name (accepted for one release)."""


def split_direction(direction: str) -> tuple[pairs.Domain, pairs.Domain]:
    """``"a_to_b"`` -> ``(A, B)`` (:class:`mrbench.pairs.Domain` objects, equal to ``"a"`` and
    ``"b"``). An old contract name (``"t1_to_t2"``) raises :class:`~mrbench.pairs.ContractError`
    naming the new contract; anything else ValueError."""
    if isinstance(direction, str) and direction in pairs.LEGACY_KEYS:
        raise ContractError(
            f"direction {direction!r} belongs to the old T1/T2 method contract; {pairs.CONTRACT}"
        )
    if direction == NEUTRAL_DIRECTIONS[0]:
        return pairs.A, pairs.B
    if direction == NEUTRAL_DIRECTIONS[1]:
        return pairs.B, pairs.A
    raise ValueError(
        f"unknown direction {direction!r}; expected one of {', '.join(NEUTRAL_DIRECTIONS)}"
    )


def check_domain(domain: str) -> pairs.Domain:
    """``domain`` as :data:`pairs.A` or :data:`pairs.B` (e.g. for ``content_map(x, domain)``); an
    old contract name (``"t1"``) raises :class:`~mrbench.pairs.ContractError`, anything else
    ValueError."""
    if isinstance(domain, str) and domain in pairs.LEGACY_KEYS:
        raise ContractError(
            f"domain {domain!r} belongs to the old T1/T2 method contract; {pairs.CONTRACT}"
        )
    if domain in DOMAINS:
        return pairs.A if domain == pairs.A else pairs.B
    raise ValueError(f"domain {domain!r}: expected 'a' or 'b'")


#: a ``t1``/``t2`` token of a state-dict key, optimiser or network name written before the
#: contract became pair-neutral (``G_t1_to_t2.model.0.weight``, ``enc.t2.conv``,
#: ``attr_mean_t1``): tokens are separated by ``.`` and ``_``
_LEGACY_TOKEN = re.compile(r"(^|[._])t([12])(?=$|[._])")


def upgrade_legacy_name(name: str) -> str:
    """``"G_t1_to_t2.model.0.weight"`` -> ``"G_a_to_b.model.0.weight"``: a name of a model
    saved before the contract became pair-neutral, with ``t1`` as ``a`` and ``t2`` as ``b``.
    No built-in network has a ``t1``/``t2`` token in a name now, so the renaming is exact."""
    return _LEGACY_TOKEN.sub(lambda m: m.group(1) + ("a" if m.group(2) == "1" else "b"), name)


def upgrade_legacy_names(obj: Any) -> Any:
    """``obj`` (a state dict, a checkpoint's method or EMA state) with every string key
    of every nested dict renamed by :func:`upgrade_legacy_name`: what loads a model or a
    checkpoint written before pairs existed (all trained on T1w/T2w, ``t1`` = ``a``)."""
    if isinstance(obj, dict):
        out = {(upgrade_legacy_name(k) if isinstance(k, str) else k): upgrade_legacy_names(v)
               for k, v in obj.items()}  # fmt: skip
        return OrderedDict(out) if isinstance(obj, OrderedDict) else out
    return obj


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
    #: Old parameter names still accepted for one release, ``{old: new}``; using one warns
    #: (:class:`RenamedParameterWarning`). Shared networks take the same names in every method:
    #: the NCSN++ generator ``unet_ch``, ``unet_mult``, ``unet_res_blocks``, ``unet_attn``
    #: (plus ``nz``, ``z_emb_dim``, ``n_mlp``), the time-conditioned discriminator ``tdis_ch``,
    #: ``tdis_t_emb``, ``tdis_down``, its lazy R1 penalty ``r1_gamma``, ``r1_every``, and the
    #: few-step diffusion ``num_steps``, ``beta_min``, ``beta_max``.
    aliases: ClassVar[dict[str, str]] = {}

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
    #: Training cost in GPU seconds per training image at 256 x 256 px: an estimate until
    #: ``benchmarks/train_throughput.py`` measures it on a GPU; None: unknown (cluster runtimes
    #: use a cautious default).
    seconds_per_image_256: ClassVar[float | None] = None
    #: GPU seconds to translate one 256 x 256 slice (validation and test runtimes), an estimate;
    #: None: one forward pass, a third of a training step (samplers with many network
    #: evaluations per slice must state it).
    translate_seconds_per_image_256: ClassVar[float | None] = None
    #: Optional capabilities, e.g. ``"content_maps"`` (offers ``content_map(x, domain)``, domain
    #: ``"a"`` or ``"b"``, for a
    #: Fig. 3-style figure); any disentangling method can offer it.
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: True if the method is a reconstruction from its paper (no official code): tables say so.
    reconstruction: ClassVar[bool] = False
    #: True if training needs per-pixel tissue class labels (batch keys ``"label_a"``,
    #: ``"label_b"``); methods without it never see labels.
    needs_labels: ClassVar[bool] = False
    #: True if the method learns from co-registered pairs (supervised): every training batch item
    #: then holds the ``a`` and the ``b`` slice of the same position (voxel-aligned, one
    #: augmentation draw for both), and tables show the method in Table 1's supervised reference
    #: block, never ranked with the unsupervised methods. Every other method gets unpaired slices.
    paired: ClassVar[bool] = False
    #: For methods that split each training batch into parts themselves: the multiple a
    #: process's share of the batch must be in a data-parallel job (``training.gpus_per_job``),
    #: so that the parts over all processes add up to those of one process on the whole batch.
    rank_batch_multiple: ClassVar[int] = 1
    #: Deviations from the method's official recipe and code (adaptations to 1-channel MRI etc.),
    #: one sentence each; the recipe table lists them.
    deviations: ClassVar[tuple[str, ...]] = ()
    #: Optimiser family for the recipe table, e.g. ``"Adam"`` (its learning rates and betas are
    #: read from the resolved parameters whose names start with ``lr`` or ``beta``).
    optimizer: ClassVar[str] = ""
    #: Named training recipes (sections of trainer keys, :mod:`mrbench.training.loop`), picked for
    #: every method at once by the config's top-level ``recipe`` key
    #: (:mod:`mrbench.config.recipes`):
    #:
    #: - ``"official"``: the published recipe, written as the paper or official code states it:
    #:   ``batch_size``, ``epochs`` (converted to steps from the training split at run time),
    #:   ``steps_cap`` (an official iteration cap, e.g. DRIT++'s 500k full iterations),
    #:   ``lr_schedule`` and its keys (e.g. ``lr_decay_start: 0.5`` for "decay from epoch 100
    #:   of 200"), ``ema_decay``, ``augment`` (``"resize_crop_flip"`` or
    #:   ``"random_resized_crop_flip"``, only if the official recipe augments) and ``select``
    #:   (``"last"`` or ``"best"``, the official choice);
    #: - ``"equal_budget"``: the same without ``batch_size``/``epochs``/``steps``/``steps_cap``
    #:   (every method gets :data:`mrbench.config.recipes.EQUAL_BUDGET`); omitted, it is
    #:   ``official`` less those keys.
    #:
    #: Anything the benchmark cannot follow goes into :attr:`deviations`. Example::
    #:
    #:     recipes = {
    #:         "official": {"batch_size": 1, "epochs": 200, "lr_schedule": "linear",
    #:                      "lr_decay_start": 0.5, "augment": "resize_crop_flip",
    #:                      "select": "last"},
    #:         "equal_budget": {"lr_schedule": "linear", "lr_decay_start": 0.5,
    #:                          "augment": "resize_crop_flip", "select": "last"},
    #:     }
    recipes: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def components(cls, params: dict[str, Any]) -> dict[str, bool]:
        """Named on/off components of a variant from its *resolved* parameters, for ablation
        tables (e.g. ``{"Disentangled": True, "Diffusion": False, "D_c": False}``); empty for
        methods without switchable components."""
        return {}

    @classmethod
    def capabilities_for(cls, params: dict[str, Any]) -> frozenset[str]:
        """The capabilities a variant with these *resolved* parameters really offers (default:
        :attr:`capabilities`); a variant that switches off the module behind one drops it."""
        return frozenset(cls.capabilities)

    @classmethod
    def check_params(cls, params: dict[str, Any], image_size: int) -> None:
        """Raise ``ValueError("<key>: <problem>")`` for a parameter that cannot work, so that a
        config is refused when it is read rather than after hours of data jobs.

        The default, which every plugin gets for free: known keys only; each value of the type
        of its default (bool; int; int or float for a float; str; list; dict; anything for a
        ``None`` default); no negative number where the default is >= 0; then the constructor's
        own checks (e.g. size constraints for ``image_size``) run on the meta device, where even a
        paper-size model costs no memory or time, and a count set to 0 where its default is positive
        is refused when it leaves a layer without weights or the constructor fails. Plugins with
        further rules override this and call ``super().check_params(params, image_size)``.
        """
        for key, value in params.items():
            if key not in cls.defaults:
                known = ", ".join(sorted(cls.defaults)) or "none"
                raise ValueError(f"{key}: unknown parameter; known: {known}")
            problem = _type_problem(cls.defaults[key], value)
            if problem:
                raise ValueError(f"{key}: {value!r} is {problem}")
        # a count whose default is positive set to 0 (a width, a number of heads) builds layers
        # without weights or divides by zero: named here, not as a crash in training
        zeros = [
            k
            for k, v in params.items()
            if v == 0 and type(v) is int and type(cls.defaults[k]) is int and cls.defaults[k] > 0
        ]
        try:
            with torch.device("meta"), torch.random.fork_rng(devices=[]):
                model = cls(dict(params), image_size=image_size)
        except ValueError as exc:
            raise ValueError(f"{exc} (for image_size {image_size})") from None
        except Exception as exc:  # noqa: BLE001 - a constructor that cannot run on the meta device
            if zeros:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ValueError(f"{zeros[0]}: 0 cannot build the networks ({reason})") from None
            return  # keeps its own checks for training time
        empty = [name for name, w in model.named_parameters() if w.numel() == 0]
        if empty and zeros:
            raise ValueError(f"{zeros[0]}: 0 leaves layer {empty[0]} without weights")

    @classmethod
    def label(cls) -> str:
        """Display name, falling back to the plugin name."""
        return cls.display_name or cls.plugin_name

    @classmethod
    def rename_params(cls, params: dict[str, Any] | None, where: str = "params") -> dict[str, Any]:
        """``params`` with old names (:attr:`aliases`) replaced by the current ones, warning
        once per old name; raises ValueError for unknown names or an old and a new name given
        together. ``where`` names the source in messages (a config key, a file)."""
        out: dict[str, Any] = {}
        for key, value in (params or {}).items():
            new = cls.aliases.get(key)
            if new is None:
                continue
            if new in (params or {}):
                raise ValueError(
                    f"{where}: method {cls.plugin_name!r} got both {key!r} and its new name {new!r}"
                )
            warnings.warn(
                f"{where}: method {cls.plugin_name!r} parameter {key!r} is now {new!r}; the old "
                "name is accepted for one release",
                RenamedParameterWarning,
                stacklevel=3,
            )
            out[new] = value
        out |= {k: v for k, v in (params or {}).items() if k not in cls.aliases}
        unknown = sorted(set(out) - set(cls.defaults))
        if unknown:
            raise ValueError(
                f"{where}: method {cls.plugin_name!r}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(cls.defaults))}"
            )
        return out

    def __init__(self, params: dict[str, Any] | None = None, image_size: int = 64) -> None:
        super().__init__()
        self.params: dict[str, Any] = {**self.defaults, **self.rename_params(params)}
        self.image_size = image_size

    # ----------------------------------------------------------------- training
    @abc.abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """One optimisation step (all of the method's updates) on a :class:`~mrbench.pairs.Batch`
        (keys ``a``, ``b``, ``mask_a``, ``mask_b``); returns named scalar losses."""

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
        """Translate a batch ``(B, 1, H, W)`` in ``[-1, 1]`` in ``direction`` (``"a_to_b"`` or
        ``"b_to_a"``); returns the same shape and range."""

    def validation_outputs(self, x: torch.Tensor, direction: str) -> dict[str, torch.Tensor]:
        """Named intermediate images of a translation, same shape and range as ``x`` (default
        none). The trainer's validation logs the PSNR of each against the input and against the
        target (``psnr_<name>_vs_input``, ``psnr_<name>_vs_target``): e.g. a translator that
        stays near the identity map while every loss falls shows a high PSNR to its input."""
        return {}

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
