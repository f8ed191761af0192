"""The contrast pairs a config runs, per dataset, and the directions translated and evaluated.

``datasets.<name>.pairs`` lists the pairs of a dataset (default ``[[t1, t2]]``, the paper's
pair, so configs written before pairs existed keep their meaning); the first contrast of a pair
is the method contract's domain ``a``. Each pair is checked against the contrasts the dataset's
kind offers (:attr:`mrbench.datasets.kind.DatasetKind.contrasts`); a pair listed twice (also
``[t2, t1]`` after ``[t1, t2]``) is refused.

The top-level ``directions`` key is optional:

- omitted: both directions of every configured pair are translated and evaluated;
- given: exactly the listed directions are translated and evaluated (``[t1_to_t2, t2_to_t1]``
  in the shipped configs: today's meaning). Every listed direction must belong to a configured
  pair of some dataset, and every configured pair must have at least one listed direction (a pair
  trained and never evaluated is a mistake in the config, not a setting).

Every error is one line naming the config key.
"""

from __future__ import annotations

from typing import Any

from mrbench.config.kinds import dataset_kind_of
from mrbench.domain import DEFAULT_PAIR
from mrbench.errors import ConfigError
from mrbench.pairs import check_pair, directions_of, is_default, pair_tag, parse_direction

__all__ = [
    "all_directions",
    "check_pairs",
    "dataset_directions",
    "dataset_pairs",
    "default_pair_of",
    "pair_args",
    "pair_of_tag",
]


def _offered(config: dict, dataset: str) -> tuple[str, ...]:
    """The contrasts the dataset's kind declares (T1w and T2w for kinds that declare none)."""
    kind = dataset_kind_of(config, dataset)
    return tuple(getattr(kind, "contrasts", None) or DEFAULT_PAIR)


def dataset_pairs(config: dict, dataset: str) -> list[tuple[str, str]]:
    """The checked pairs of one dataset entry, in config order (``a`` first); default the
    paper's pair. Raises :class:`ConfigError` naming ``datasets.<dataset>.pairs``."""
    key = f"config key datasets.{dataset}.pairs"
    raw = (config["datasets"].get(dataset) or {}).get("pairs")
    if raw is None:
        return [DEFAULT_PAIR]
    if isinstance(raw, str) or not isinstance(raw, list | tuple) or not raw:
        raise ConfigError(f"{key}: expected a non-empty list of pairs, e.g. [[t1, t2]]")
    offered = _offered(config, dataset)
    out: list[tuple[str, str]] = []
    for pair in raw:
        if isinstance(pair, str) or not isinstance(pair, list | tuple):
            raise ConfigError(f"{key}: {pair!r} is not a pair of contrasts, e.g. [t1, t2]")
        try:
            checked = check_pair(pair, offered)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        for seen in out:
            if set(seen) == set(checked):
                raise ConfigError(
                    f"{key}: pair {list(checked)!r} is listed twice (as {list(seen)!r}); a pair "
                    "runs both its directions"
                )
        out.append(checked)
    return out


def _listed(config: dict) -> list[str] | None:
    """The config's ``directions`` (checked names), or None when the key is omitted."""
    listed = config.get("directions")
    if listed is None:
        return None
    if isinstance(listed, str) or not isinstance(listed, list | tuple) or not listed:
        raise ConfigError("config key directions: expected a non-empty list, e.g. [t1_to_t2]")
    for d in listed:
        try:
            parse_direction(d)
        except ValueError as exc:
            raise ConfigError(f"config key directions: {exc}") from None
    if len(set(listed)) != len(listed):
        raise ConfigError(f"config key directions: a direction is listed twice ({listed})")
    return list(listed)


def dataset_directions(config: dict, dataset: str) -> list[str]:
    """The contrast directions translated and evaluated on one dataset: per pair (config
    order), its directions listed in ``directions`` (in that key's order), or both
    (``a_to_b`` first) when the key is omitted."""
    listed = _listed(config)
    out: list[str] = []
    for pair in dataset_pairs(config, dataset):
        own = directions_of(pair)
        out += list(own) if listed is None else [d for d in listed if d in own]
    return out


def all_directions(config: dict) -> list[str]:
    """Every direction of :func:`dataset_directions` over all datasets, each once."""
    out: dict[str, None] = {}
    for dataset in config.get("datasets") or {}:
        out.update(dict.fromkeys(dataset_directions(config, dataset)))
    return list(out)


def check_pairs(config: dict) -> None:
    """Raise :class:`ConfigError` for a bad pair of any dataset, a listed direction no
    configured pair holds, or a configured pair none of whose directions is listed."""
    pairs = {d: dataset_pairs(config, d) for d in config.get("datasets") or {}}
    listed = _listed(config)
    if listed is None:
        return
    every = {d for ps in pairs.values() for p in ps for d in directions_of(p)}
    for d in listed:
        if d not in every:
            shown = "; ".join(
                f"{ds}: " + ", ".join("/".join(p) for p in ps) for ds, ps in pairs.items()
            )
            raise ConfigError(
                f"config key directions: {d} is not a direction of any configured pair "
                f"({shown}); add the pair to a dataset's pairs or remove {d}"
            )
    for dataset, ps in pairs.items():
        for pair in ps:
            own = directions_of(pair)
            if not any(d in listed for d in own):
                raise ConfigError(
                    f"config key datasets.{dataset}.pairs: pair {list(pair)!r} has no direction "
                    f"in the config's directions ({', '.join(listed)}); add {own[0]} and/or "
                    f"{own[1]} there, or omit directions to run both directions of every pair"
                )


def pair_of_tag(tag: str, pairs: list[tuple[str, str]]) -> tuple[str, str]:
    """The configured pair whose :func:`mrbench.pairs.pair_tag` is ``tag`` (``"t2-flair"``)."""
    for pair in pairs:
        if pair_tag(pair) == tag:
            return pair
    raise ValueError(f"pair tag {tag!r}: not a configured pair ({', '.join(map(pair_tag, pairs))})")


def pair_args(pair: Any) -> list[str]:
    """``mrbench train`` options of a pair, as an argument list: ``["--pair", a, b]``."""
    a, b = check_pair(pair)
    return ["--pair", a, b]


def default_pair_of(pairs: list[tuple[str, str]]) -> tuple[str, str]:
    """The configured T1w/T2w pair (as configured: either order), else :data:`DEFAULT_PAIR`."""
    return next((p for p in pairs if is_default(p)), DEFAULT_PAIR)
