"""The methods of a run as tables, figures and the report see them: the roster.

The library never recognises a method by its config name. What it needs to know comes from two
places, resolved once here:

- the plugin's traits (``mrbench_methods.base.TranslationMethod``): display name, citation, family,
  reconstruction flag, trainability, capabilities, the ``paired`` trait (a supervised reference)
  and the ablation components of a variant (from its *resolved* parameters);
- the config: each method entry's ``label`` (overrides the display name) and ``paper_row`` (the
  row of the paper's reported tables it reproduces), and the ``evaluation`` keys that give the
  methods their roles: ``table1_methods``, ``ablation_methods``, ``reference_method``,
  ``efficiency_pair``, ``method_order`` and ``test_supervised``.

The workflow writes the roster to ``methods.json`` once per run; every table and figure command
reads it (``--roster``), so a renamed variant keeps its row and checkmarks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mrbench.config.facts_cache import memoized
from mrbench.io import InputError, atomic_path


@dataclass(frozen=True)
class MethodEntry:
    """One configured method: its config name, plugin and what the plugin says about it."""

    name: str
    plugin: str
    label: str
    citation: str = ""
    family: str = "other"
    reconstruction: bool = False
    trainable: bool = True
    #: ablation components of this variant, e.g. ``{"Disentangled": True, "D_c": False}``
    components: dict[str, bool] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()
    #: the ``method`` column of ``mrbench/data/paper_results.csv`` this entry reproduces
    paper_row: str | None = None
    deviations: tuple[str, ...] = ()
    #: trained on co-registered pairs (the plugin's ``paired`` trait): a supervised reference,
    #: shown in Table 1's supervised block and left out of the significance tests by default
    paired: bool = False

    @property
    def is_partial_variant(self) -> bool:
        """A variant with at least one ablation component switched off."""
        return bool(self.components) and not all(self.components.values())


@dataclass
class Roster:
    """Every method of a run with its role in the tables (lists hold config names)."""

    entries: dict[str, MethodEntry]
    #: row order of every method table (efficiency, FID, box plots)
    order: list[str]
    #: rows of Table 1, in order
    table1: list[str]
    #: rows of the ablation table (Table 2), in order
    ablation: list[str]
    #: the method tested against every other one in the significance table
    reference: str | None = None
    #: the methods whose convergence the efficiency table compares (may be empty)
    efficiency_pair: list[str] = field(default_factory=list)
    #: test the supervised (paired) methods against the reference too
    #: (``evaluation.test_supervised``)
    test_supervised: bool = False

    # ------------------------------------------------------------------ queries
    def label(self, name: str) -> str:
        entry = self.entries.get(name)
        return entry.label if entry else name

    def labels(self) -> dict[str, str]:
        return {n: e.label for n, e in self.entries.items()}

    def ordered(self, names: list[str]) -> list[str]:
        """``names`` (duplicates dropped) in roster order; unknown names follow as given."""
        names = list(dict.fromkeys(names))
        known = [n for n in self.order if n in names]
        return known + [n for n in names if n not in self.order]

    def component_names(self, names: list[str] | None = None) -> list[str]:
        """Ablation component names of the given methods (default: the ablation rows), each
        once, in order of first appearance."""
        out: dict[str, None] = {}
        for n in self.ablation if names is None else names:
            out.update(dict.fromkeys(self.entries[n].components))
        return list(out)

    def with_capability(self, capability: str) -> list[str]:
        return [n for n in self.order if capability in self.entries[n].capabilities]

    def supervised(self, names: list[str]) -> list[str]:
        """The supervised (paired) methods among ``names``, in the given order."""
        return [n for n in names if n in self.entries and self.entries[n].paired]

    def paper_rows(self) -> dict[str, str]:
        """``paper_row`` -> config name, for the entries that name one."""
        return {e.paper_row: n for n, e in self.entries.items() if e.paper_row}

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": [asdict(self.entries[n]) for n in self.entries],
            "order": self.order,
            "table1": self.table1,
            "ablation": self.ablation,
            "reference": self.reference,
            "efficiency_pair": self.efficiency_pair,
            "test_supervised": self.test_supervised,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Roster:
        entries = {}
        for m in data["methods"]:
            m = dict(m)
            m["capabilities"] = tuple(m.get("capabilities", ()))
            m["deviations"] = tuple(m.get("deviations", ()))
            entries[m["name"]] = MethodEntry(**m)
        return cls(
            entries,
            list(data["order"]),
            list(data["table1"]),
            list(data["ablation"]),
            data.get("reference"),
            list(data.get("efficiency_pair") or []),
            bool(data.get("test_supervised", False)),
        )

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def plain(cls, names: list[str], labels: dict[str, str] | None = None) -> Roster:
        """A roster knowing names only (e.g. tables made from a bare results file): every
        method in Table 1 in the given order, no ablation rows, no reference."""
        names = list(dict.fromkeys(names))
        labels = labels or {}
        entries = {n: MethodEntry(n, "", labels.get(n, n)) for n in names}
        return cls(entries, names, list(names), [])


def read_roster(path: str | Path) -> Roster:
    """A roster written by :meth:`Roster.write` (``methods.json``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: method roster not found")
    try:
        return Roster.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a method roster ({exc})") from None


# ---------------------------------------------------------------------- from a config
def _names(ev: dict[str, Any], key: str, known: list[str]) -> list[str] | None:
    value = ev.get(key)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"config key evaluation.{key}: expected a list of method names")
    for name in value:
        if name not in known:
            raise ValueError(
                f"config key evaluation.{key}: {name!r} is not a configured method; "
                f"configured: {', '.join(known)}"
            )
    return list(dict.fromkeys(value))


def default_labels(entries: dict[str, tuple[str, str, bool]]) -> dict[str, str]:
    """Labels from ``{name: (plugin, display name, is a partial variant)}``.

    An entry gets its plugin's display name when it is the plugin's only entry, is named after
    the plugin, or (with no entry so named) is the plugin's one entry with every ablation
    component on; the other entries of that plugin (its variants) get their config name in
    brackets so that rows stay distinct.
    """
    by_plugin: dict[str, list[str]] = {}
    for name, (plugin, _, _) in entries.items():
        by_plugin.setdefault(plugin, []).append(name)
    primary: dict[str, str | None] = {}
    for plugin, names in by_plugin.items():
        complete = [n for n in names if not entries[n][2]]
        if len(names) == 1:
            primary[plugin] = names[0]
        elif plugin in names:
            primary[plugin] = plugin
        else:
            primary[plugin] = complete[0] if len(complete) == 1 else None
    return {
        name: display if primary[plugin] == name else f"{display} ({name})"
        for name, (plugin, display, _) in entries.items()
    }


def _reference(
    reference: str | None, known: list[str], table1: list[str], entries: dict[str, MethodEntry]
) -> str | None:
    """``evaluation.reference_method`` checked, or by default the last row of Table 1 that is
    not a supervised reference (a ceiling, not the method a paper proposes)."""
    if reference is not None and reference not in known:
        raise ValueError(
            f"config key evaluation.reference_method: {reference!r} is not a configured method"
        )
    if reference is None and table1:
        unsupervised = [n for n in table1 if not entries[n].paired]
        reference = (unsupervised or table1)[-1]
    return reference


@memoized("roster_of", encode=lambda r: r.to_dict(), decode=lambda d: Roster.from_dict(d))
def roster_of(config: dict) -> Roster:
    """The roster of a config: plugin traits of every method entry and the roles from the
    ``evaluation`` section (defaults below); a bad name raises ``ValueError`` naming the key.

    Defaults: rows in config order (``method_order`` lists the methods to put first); ablation
    rows: every method with ablation components, the fewest components switched on first (the
    full model last), ties in config order; Table 1: every method except variants with a
    component switched off; reference: the last unsupervised row of Table 1 (where papers put
    the proposed method); efficiency pair: none (the threshold is then what every trained
    method reached).
    """
    from mrbench.config.evaluation import evaluation_settings
    from mrbench.config.resolve import load_plugins
    from mrbench_methods.base import get_plugin

    load_plugins(config)
    ev = evaluation_settings(config)
    known = list(config["methods"])
    classes = {n: get_plugin(spec["plugin"]) for n, spec in config["methods"].items()}
    params = {
        n: {**classes[n].defaults, **(spec.get("params") or {})}
        for n, spec in config["methods"].items()
    }
    components = {
        n: {str(k): bool(v) for k, v in classes[n].components(params[n]).items()} for n in known
    }
    labels = default_labels(
        {
            n: (
                spec["plugin"],
                classes[n].label(),
                bool(components[n]) and not all(components[n].values()),
            )
            for n, spec in config["methods"].items()
        }
    )
    entries: dict[str, MethodEntry] = {}
    for name, spec in config["methods"].items():
        cls = classes[name]
        entries[name] = MethodEntry(
            name=name,
            plugin=spec["plugin"],
            label=spec.get("label") or labels[name],
            citation=cls.citation,
            family=cls.family,
            reconstruction=bool(cls.reconstruction),
            trainable=bool(cls.trainable),
            components=components[name],
            capabilities=tuple(sorted(cls.capabilities_for(params[name]))),
            paper_row=spec.get("paper_row"),
            deviations=tuple(cls.deviations),
            paired=bool(getattr(cls, "paired", False) or getattr(cls, "needs_pairs", False)),
        )
    # an order preference: names not configured (e.g. methods left out of a run) are skipped
    first = [n for n in ev.get("method_order") or [] if n in known]
    order = list(dict.fromkeys(first + known))
    ablation = _names(ev, "ablation_methods", known)
    if ablation is None:
        with_parts = [n for n in order if entries[n].components]
        ablation = sorted(
            with_parts, key=lambda n: (sum(entries[n].components.values()), known.index(n))
        )
    table1 = _names(ev, "table1_methods", known)
    if table1 is None:
        table1 = [n for n in order if not entries[n].is_partial_variant]
    else:
        table1 = [n for n in order if n in table1]
    reference = _reference(ev.get("reference_method"), known, table1, entries)
    pair = _names(ev, "efficiency_pair", known)
    if pair is not None and (len(pair) != 2 or len(ev["efficiency_pair"]) != 2):
        raise ValueError(
            "config key evaluation.efficiency_pair: expected two different methods, got "
            f"{list(ev['efficiency_pair'])!r} (null: compare every trained method)"
        )
    supervised_tests = bool(ev.get("test_supervised", False))
    return Roster(entries, order, table1, ablation, reference, pair or [], supervised_tests)
