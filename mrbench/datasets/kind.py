"""Dataset plugins: one class per dataset kind says how its subjects are listed and acquired.

The workflow and the config checks ask the dataset's kind instead of branching on names, so a new
kind of dataset is one module plus a config entry::

    from mrbench.datasets.kind import DatasetKind, register_dataset

    @register_dataset("mydata")
    class MyData(DatasetKind):
        display_name = "My data"

        def acquire(self, subject, settings, out_dir):
            ...  # write out_dir/{<contrast>,mask}.nii.gz for every contrast of
            # needed_contrasts(self, settings) (mrbench.io.save_volume); label optional;
            # contrasts normalised to [0, 1] (mrbench.slices.normalise_volume): the slice
            # store refuses other ranges

with ``datasets: {mydata: {image_size: 128, split_file: ...}}`` in the config and the module in a
folder named by ``plugin_paths`` (or an installed package's ``mrbench.datasets`` entry point).

Contrasts: a kind declares those it offers (:attr:`DatasetKind.contrasts`, default T1w and T2w)
and the one it always needs as registration or tissue-segmentation reference
(:attr:`DatasetKind.reference`); :func:`needed_contrasts` gives the contrasts a configured
dataset writes: those of its ``pairs`` plus the reference.

How volumes are acquired (:attr:`DatasetKind.acquisition`):

``subject``
    the workflow's generic ``dataset_subject`` rule runs :meth:`DatasetKind.acquire` once per
    subject of :meth:`DatasetKind.subjects` (the phantom; most plugins);
``rules``
    the kind ships its own rules that write ``subjects/<id>/{<contrast>,mask,label}.nii.gz``
    per subject;
    where the subject list is only known after a checkpoint (IXI: chosen from the archives),
    :attr:`DatasetKind.split_checkpoint` names it;
``import``
    the kind's own rule writes the whole ``subjects`` folder and the split file at once (BraTS,
    MSD: the case list is known only from the user's data); such kinds derive from
    :class:`ImportedDatasetKind`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from mrbench.config.plugins import env_plugin_paths, load_entry_points, load_plugin_folders
from mrbench.domain import CONTRASTS, DEFAULT_PAIR
from mrbench.errors import ConfigError
from mrbench.pairs import check_pair, contrasts_of, subject_files

#: modules of the built-in kinds (imported when the registry is first asked)
BUILTIN_MODULES = (
    "mrbench.datasets.phantom",
    "mrbench.datasets.ixi",
    "mrbench.datasets.brats",
    "mrbench.datasets.msd",
)
ENTRY_POINT_GROUP = "mrbench.datasets"
ACQUISITIONS = ("subject", "rules", "import")

_KINDS: dict[str, type[DatasetKind]] = {}


class DatasetKind:
    """How one kind of dataset lists its subjects and acquires their volumes."""

    #: registry name (set by :func:`register_dataset`)
    name: ClassVar[str] = ""
    #: name shown in tables and the report
    display_name: ClassVar[str] = ""
    acquisition: ClassVar[str] = "subject"
    #: ``rules`` kinds whose subject list comes from a checkpoint with an output named ``split``
    split_checkpoint: ClassVar[str | None] = None
    #: contrasts the kind can write (keys of :data:`mrbench.domain.CONTRASTS`)
    contrasts: ClassVar[tuple[str, ...]] = DEFAULT_PAIR
    #: contrast written whatever the pairs, as the reference other contrasts are registered to or
    #: tissues are segmented from (``None``: the kind needs none). The default ``t1`` serves
    #: kinds that write no ``label.nii.gz``: ``mrbench dataset-subject`` segments their T1w.
    reference: ClassVar[str | None] = "t1"

    def subjects(self, dataset: str, settings: dict[str, Any]) -> list[str] | None:
        """Sorted subject ids, or ``None`` where the list is only known after acquisition.

        Default: the subjects of the dataset's split file, which must exist.
        """
        from mrbench.datasets.splits import read_splits

        path = Path(split_file_of(dataset, settings))
        if not path.exists():
            raise ConfigError(f"config key datasets.{dataset}.split_file: {path} not found")
        return sorted(read_splits(path)["subject"])

    def acquire(self, subject: str, settings: dict[str, Any], out_dir: Path) -> None:
        """Write ``out_dir/{<contrast>,mask}.nii.gz`` of one subject (``subject`` acquisition)
        for every contrast of :func:`needed_contrasts`, and ``label.nii.gz`` where the kind knows
        the tissue classes (else they are segmented from the T1w afterwards)."""
        raise NotImplementedError(f"dataset kind {self.name!r} has no per-subject acquisition")


class ImportedDatasetKind(DatasetKind):
    """A kind imported at once by its own rule, which writes the subjects folder and the split
    file: the case list is only known from the data."""

    acquisition: ClassVar[str] = "import"

    def subjects(self, dataset: str, settings: dict[str, Any]) -> list[str] | None:
        return None


def needed_contrasts(
    kind_or_name: DatasetKind | type[DatasetKind] | str,
    settings: dict[str, Any],
    dataset: str | None = None,
) -> tuple[str, ...]:
    """The contrasts a configured dataset writes, in :data:`~mrbench.domain.CONTRASTS` order:
    those of its ``pairs`` (default ``[[t1, t2]]``) plus the kind's :attr:`~DatasetKind.reference`.

    ``dataset`` names the config entry in errors (default: the kind's name). Raises
    :class:`ConfigError` naming ``datasets.<dataset>.pairs`` for a malformed pair or a contrast
    the kind does not offer.
    """
    kind = get_dataset_kind(kind_or_name) if isinstance(kind_or_name, str) else kind_or_name
    key = f"datasets.{dataset or kind.name}.pairs"
    pairs = settings.get("pairs") or [DEFAULT_PAIR]
    if isinstance(pairs, str) or not isinstance(pairs, list | tuple):
        raise ConfigError(f"config key {key}: expected a list of pairs, e.g. [[t1, t2]]")
    for pair in pairs:
        if isinstance(pair, str) or not isinstance(pair, list | tuple):
            raise ConfigError(f"config key {key}: {pair!r} is not a pair, e.g. [t1, t2]")
        try:
            check_pair(pair)
        except ValueError as exc:
            raise ConfigError(f"config key {key}: {exc}") from None
        for c in pair:
            if c not in kind.contrasts:
                raise ConfigError(
                    f"config key {key}: contrast {c!r} is not offered by dataset kind "
                    f"{kind.name!r} (it offers {', '.join(kind.contrasts)})"
                )
    return contrasts_of([*pairs, (kind.reference,)] if kind.reference else pairs)


def needed_volumes(
    kind_or_name: DatasetKind | type[DatasetKind] | str,
    settings: dict[str, Any],
    dataset: str | None = None,
) -> tuple[str, ...]:
    """Volumes of every subject of a configured dataset: its contrasts, mask and label."""
    return subject_files(needed_contrasts(kind_or_name, settings, dataset))


def split_file_of(dataset: str, settings: dict[str, Any]) -> str:
    return settings.get("split_file") or f"config/splits/{dataset}.tsv"


def register_dataset(name: str) -> Callable[[type[DatasetKind]], type[DatasetKind]]:
    """Class decorator: make a dataset kind available to configs under this name."""

    def wrap(cls: type[DatasetKind]) -> type[DatasetKind]:
        if not (isinstance(cls, type) and issubclass(cls, DatasetKind)):
            raise TypeError(f"dataset kind {name!r}: {cls!r} is not a DatasetKind subclass")
        if cls.acquisition not in ACQUISITIONS:
            raise ValueError(
                f"dataset kind {name!r}: acquisition {cls.acquisition!r} not in {ACQUISITIONS}"
            )
        unknown = [c for c in cls.contrasts if c not in CONTRASTS]
        if unknown or not cls.contrasts:
            raise ValueError(
                f"dataset kind {name!r}: contrasts {list(cls.contrasts)!r} must be non-empty and "
                f"among {', '.join(CONTRASTS)}"
            )
        if cls.reference is not None and cls.reference not in cls.contrasts:
            raise ValueError(
                f"dataset kind {name!r}: reference {cls.reference!r} is not among its contrasts"
            )
        old = _KINDS.get(name)
        if old is not None and old.__qualname__ != cls.__qualname__:
            raise ValueError(f"dataset kind {name!r} is registered twice")
        cls.name = name
        cls.display_name = cls.display_name or name
        _KINDS[name] = cls
        return cls

    return wrap


def dataset_kinds(plugin_paths: Iterable[str | Path] = ()) -> dict[str, type[DatasetKind]]:
    """Every registered kind: the built-in ones, installed entry points and folder plugins (the
    given folders and those of ``MRBENCH_PLUGIN_PATH``, which the workflow sets for its jobs)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    load_entry_points(ENTRY_POINT_GROUP)
    load_plugin_folders([*plugin_paths, *env_plugin_paths()])
    return dict(_KINDS)


def get_dataset_kind(kind: str, plugin_paths: Iterable[str | Path] = ()) -> DatasetKind:
    kinds = dataset_kinds(plugin_paths)
    if kind not in kinds:
        raise KeyError(f"unknown dataset kind {kind!r}; known: {', '.join(sorted(kinds))}")
    return kinds[kind]()
