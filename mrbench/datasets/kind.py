"""Dataset plugins: one class per dataset kind says how its subjects are listed and acquired.

The workflow and the config checks ask the dataset's kind instead of branching on names, so a new
kind of dataset is one module plus a config entry::

    from mrbench.datasets.kind import DatasetKind, register_dataset

    @register_dataset("mydata")
    class MyData(DatasetKind):
        display_name = "My data"

        def acquire(self, subject, settings, out_dir):
            ...  # write out_dir/{t1,t2,mask}.nii.gz (mrbench.io.save_volume); label optional
            # t1 and t2 normalised to [0, 1] (mrbench.slices.normalise_volume): the slice
            # store refuses other ranges

with ``datasets: {mydata: {image_size: 128, split_file: ...}}`` in the config and the module in a
folder named by ``plugin_paths`` (or an installed package's ``mrbench.datasets`` entry point).

How volumes are acquired (:attr:`DatasetKind.acquisition`):

``subject``
    the workflow's generic ``dataset_subject`` rule runs :meth:`DatasetKind.acquire` once per
    subject of :meth:`DatasetKind.subjects` (the phantom; most plugins);
``rules``
    the kind ships its own rules that write ``subjects/<id>/{t1,t2,mask,label}.nii.gz`` per
    subject;
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
from mrbench.errors import ConfigError

#: modules of the built-in kinds (imported when the registry is first asked)
BUILTIN_MODULES = (
    "mrbench.datasets.phantom",
    "mrbench.datasets.ixi",
    "mrbench.datasets.brats",
    "mrbench.datasets.msd",
)
ENTRY_POINT_GROUP = "mrbench.datasets"
ACQUISITIONS = ("subject", "rules", "import")
#: volumes of every subject; ``label`` (tissue classes: 1 CSF, 2 GM, 3 WM, 4 lesion/tumour) is
#: made from the T1w by :func:`mrbench.preprocessing.tissues.segment_tissues` where a kind writes
#: none
VOLUMES = ("t1", "t2", "mask", "label")

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
        """Write ``out_dir/{t1,t2,mask}.nii.gz`` of one subject (``subject`` acquisition), and
        ``label.nii.gz`` where the kind knows the tissue classes (else they are segmented from
        the T1w afterwards)."""
        raise NotImplementedError(f"dataset kind {self.name!r} has no per-subject acquisition")


class ImportedDatasetKind(DatasetKind):
    """A kind imported at once by its own rule, which writes the subjects folder and the split
    file: the case list is only known from the data."""

    acquisition: ClassVar[str] = "import"

    def subjects(self, dataset: str, settings: dict[str, Any]) -> list[str] | None:
        return None


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
