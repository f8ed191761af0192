"""Contrast pairs: the pair-neutral method contract and the contrast names users read.

A method never knows which contrasts it translates. It sees two domains, ``a`` and ``b``:

- a training batch (:class:`Batch`) holds ``"a"``, ``"b"`` (images), ``"mask_a"``, ``"mask_b"``
  and, for methods with ``needs_labels``, ``"label_a"``, ``"label_b"``; ``batch.contrasts``
  names the pair (e.g. ``("t2", "flair")``), for logs only;
- directions inside a method are ``"a_to_b"`` and ``"b_to_a"`` (:data:`NEUTRAL_DIRECTIONS`).

The library maps them to contrast names everywhere a user reads them: a run on the pair
``(t2, flair)`` has directions ``t2_to_flair`` (``a_to_b``) and ``flair_to_t2`` (``b_to_a``).
The first contrast of a configured pair is ``a``.

Plugins written against the earlier contract (keys ``"t1"``/``"t2"``, directions
``"t1_to_t2"``) fail with one line naming the new contract: a :class:`Batch` refuses the old
keys, and the domain and direction names the library hands a method (:class:`Domain`,
:class:`Direction`) refuse to be compared with old names, so that
``if direction == "t1_to_t2"`` cannot silently pick the wrong generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mrbench.domain import CONTRASTS, DEFAULT_PAIR

#: the pair-neutral domain names of the method contract
DOMAINS = ("a", "b")

#: what an out-of-tree plugin written against the old contract is told
CONTRACT = (
    "the method contract is pair-neutral: batch keys 'a', 'b', 'mask_a', 'mask_b' "
    "('label_a', 'label_b' with needs_labels), directions 'a_to_b'/'b_to_a' "
    "(batch.contrasts names the pair; see mrbench/pairs.py and methods/base.py)"
)

#: names of the old contract (contrast names used as batch keys and directions)
LEGACY_KEYS = frozenset(
    {"t1", "t2", "mask_t1", "mask_t2", "label_t1", "label_t2", "t1_to_t2", "t2_to_t1"}
)


class ContractError(KeyError):
    """A plugin used a name of the old, T1/T2-specific method contract."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _legacy(name: object, what: str) -> ContractError:
    return ContractError(f"{what} {name!r} belongs to the old T1/T2 method contract; {CONTRACT}")


class Domain(str):
    """``"a"`` or ``"b"``: equal to those strings, but comparing it with an old contract name
    (``"t1"``, ``"t2"``) raises :class:`ContractError` instead of answering False."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str) and not isinstance(other, Domain) and other in LEGACY_KEYS:
            raise _legacy(other, "name" if isinstance(self, Direction) else "domain name")
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__


class Direction(Domain):
    """``"a_to_b"`` or ``"b_to_a"``, guarded like :class:`Domain`."""

    __slots__ = ()


#: the directions of the method contract, in table order (``a_to_b`` first)
NEUTRAL_DIRECTIONS = (Direction("a_to_b"), Direction("b_to_a"))
A, B = Domain("a"), Domain("b")


class Batch(dict):
    """A training batch: a dict of tensors under the neutral keys, with ``contrasts`` (the
    pair's contrast names, for logs). Asking for an old contract key raises
    :class:`ContractError` naming the new one."""

    def __init__(self, items: Any = (), contrasts: Sequence[str] = DEFAULT_PAIR) -> None:
        super().__init__(items)
        self.contrasts = tuple(contrasts)

    def __missing__(self, key: object) -> Any:
        if isinstance(key, str) and key in LEGACY_KEYS:
            raise _legacy(key, "batch key")
        raise KeyError(key)

    def __reduce__(self) -> Any:  # pickles (DataLoader workers) with its contrasts
        return (Batch, (dict(self), self.contrasts))


# ------------------------------------------------------------------ pairs and directions
def check_pair(pair: Sequence[str], offered: Iterable[str] | None = None) -> tuple[str, str]:
    """``pair`` as a tuple of two different known contrasts (and offered ones, where given);
    raises ValueError naming the problem."""
    pair = tuple(pair)
    if len(pair) != 2 or not all(isinstance(c, str) for c in pair):
        raise ValueError(f"pair {list(pair)!r}: expected two contrast names, e.g. [t1, t2]")
    for c in pair:
        if c not in CONTRASTS:
            raise ValueError(
                f"pair {list(pair)!r}: unknown contrast {c!r}; known: {', '.join(CONTRASTS)}"
            )
    if pair[0] == pair[1]:
        raise ValueError(f"pair {list(pair)!r}: a pair needs two different contrasts")
    if offered is not None:
        offered = tuple(offered)
        missing = [c for c in pair if c not in offered]
        if missing:
            raise ValueError(
                f"pair {list(pair)!r}: contrast {missing[0]!r} not offered (offered: "
                f"{', '.join(offered)})"
            )
    return pair  # type: ignore[return-value]


def directions_of(pair: Sequence[str]) -> tuple[str, str]:
    """``("t2", "flair")`` -> ``("t2_to_flair", "flair_to_t2")`` (``a_to_b`` first)."""
    a, b = check_pair(pair)
    return f"{a}_to_{b}", f"{b}_to_{a}"


def parse_direction(direction: str) -> tuple[str, str]:
    """``"t2_to_flair"`` -> ``("t2", "flair")``; ValueError for anything else."""
    parts = direction.split("_to_") if isinstance(direction, str) else []
    if len(parts) != 2 or parts[0] not in CONTRASTS or parts[1] not in CONTRASTS:
        raise ValueError(
            f"direction {direction!r}: expected <source>_to_<target> with contrasts from "
            f"{', '.join(CONTRASTS)} (e.g. t1_to_t2)"
        )
    if parts[0] == parts[1]:
        raise ValueError(f"direction {direction!r}: source and target are the same contrast")
    return parts[0], parts[1]


def neutral_direction(direction: str, pair: Sequence[str]) -> Direction:
    """The contract direction of a contrast direction for a model of ``pair``:
    ``("t2_to_flair", (t2, flair))`` -> ``"a_to_b"``. ValueError (one line, naming the pair the
    model knows) when the direction is not one of the pair's."""
    src, dst = parse_direction(direction)
    a, b = check_pair(pair)
    if (src, dst) == (a, b):
        return NEUTRAL_DIRECTIONS[0]
    if (src, dst) == (b, a):
        return NEUTRAL_DIRECTIONS[1]
    raise ValueError(
        f"direction {direction}: the model was trained on {pair_label(pair)} "
        f"({', '.join(directions_of(pair))}), not on {CONTRASTS[src]} -> {CONTRASTS[dst]}"
    )


def contrast_direction(neutral: str, pair: Sequence[str]) -> str:
    """``("a_to_b", (t2, flair))`` -> ``"t2_to_flair"``."""
    if neutral not in NEUTRAL_DIRECTIONS:
        raise ValueError(f"direction {neutral!r}: expected one of {', '.join(NEUTRAL_DIRECTIONS)}")
    return directions_of(pair)[NEUTRAL_DIRECTIONS.index(neutral)]


def contrast_of(domain: str, pair: Sequence[str]) -> str:
    """``("b", (t2, flair))`` -> ``"flair"``."""
    if domain not in DOMAINS:
        raise ValueError(f"domain {domain!r}: expected 'a' or 'b'")
    return tuple(pair)[DOMAINS.index(domain)]


def pair_of_direction(direction: str, pairs: Iterable[Sequence[str]]) -> tuple[str, str]:
    """The configured pair (as configured: ``a`` first) that ``direction`` belongs to."""
    src, dst = parse_direction(direction)
    for pair in pairs:
        if {src, dst} == set(pair):
            return check_pair(pair)
    shown = "; ".join("/".join(p) for p in pairs) or "none"
    raise ValueError(f"direction {direction}: no configured pair holds it (pairs: {shown})")


def pair_label(pair: Sequence[str]) -> str:
    """``(t2, flair)`` -> ``"T2w/FLAIR"`` (tables, messages)."""
    return "/".join(CONTRASTS.get(c, c) for c in pair)


def pair_tag(pair: Sequence[str]) -> str:
    """``(t2, flair)`` -> ``"t2-flair"``: the folder and file-name form of a pair (contrast names
    hold no ``-``)."""
    a, b = check_pair(pair)
    return f"{a}-{b}"


def is_default(pair: Sequence[str]) -> bool:
    """True for the paper's pair (T1w/T2w, either order), whose results keep today's layout."""
    return set(pair) == set(DEFAULT_PAIR) and len(tuple(pair)) == 2


def contrasts_of(pairs: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """The contrasts a dataset must offer for ``pairs``, in the order of :data:`CONTRASTS`
    (``t1`` first: the registration reference of the datasets that register)."""
    wanted = {c for p in pairs for c in p}
    return tuple(c for c in CONTRASTS if c in wanted)


def pair_from_meta(meta: dict[str, Any] | None) -> tuple[str, str]:
    """The pair a checkpoint's ``meta`` records (``meta["pair"]``); checkpoints written before
    pairs existed were all trained on T1w/T2w."""
    pair = (meta or {}).get("pair")
    return DEFAULT_PAIR if pair is None else check_pair(pair)


def subject_files(contrasts: Iterable[str]) -> tuple[str, ...]:
    """The volumes of a preprocessed subject folder: ``<contrast>.nii.gz`` for every contrast,
    the brain mask and the tissue label map."""
    return (*contrasts, "mask", "label")
