"""Training recipes: each method's published one (``official``) and an equal budget for all
(``equal_budget``), and their resolution into training settings (the recipe table of a run:
:mod:`mrbench.reporting.recipes_table`).

A plugin declares its recipes in the class attribute ``recipes`` (see
:class:`mrbench_methods.base.TranslationMethod`): ``{"official": {training keys}, "equal_budget":
{training keys}}``. The config's top-level ``recipe`` key picks one for every method:

- ``official``: the method's own published batch size, length (``epochs``), learning-rate
  schedule, EMA, augmentation and checkpoint selection.
- ``equal_budget``: every method trains :data:`EQUAL_BUDGET` (the same batch size and number of
  epochs, hence the same number of training images), as the DisDiff paper's efficiency claim
  assumes; the rest (schedule, EMA, augmentation, selection) is the method's. A plugin's
  ``equal_budget`` entry may not set ``batch_size``, ``epochs``, ``steps`` or ``steps_cap``;
  without one it is the ``official`` recipe less those keys.
- unset (``null``): no recipe, only the plugin's ``training_defaults`` (demo and test configs).

Precedence, lowest first: trainer defaults, the plugin's ``training_defaults``, the recipe, the
config's ``training`` section, the method entry's ``training``. Under ``equal_budget`` a method
entry may not change the budget (that would break the equality the recipe promises).
"""

from __future__ import annotations

from typing import Any

RECIPES = ("official", "equal_budget")
#: keys that make up a training budget
BUDGET_KEYS = ("batch_size", "epochs", "steps", "steps_cap")
#: the equal budget: the DisDiff paper's batch size 4 (its efficiency comparison) and 100 epochs
EQUAL_BUDGET: dict[str, Any] = {"batch_size": 4, "epochs": 100}


class RecipeError(ValueError):
    """A recipe that cannot be resolved; the message names the plugin or config key."""


def recipe_training(cls: type, recipe: str | None) -> dict[str, Any]:
    """The training section the plugin ``cls`` declares for ``recipe`` (``{}`` for None)."""
    if recipe is None:
        return {}
    if recipe not in RECIPES:
        raise RecipeError(f"config key recipe: {recipe!r} is unknown; known: {', '.join(RECIPES)}")
    declared = dict(getattr(cls, "recipes", {}) or {})
    name = getattr(cls, "plugin_name", cls.__name__)
    if recipe == "official":
        return dict(declared.get("official", {}))
    if "equal_budget" in declared:
        own = dict(declared["equal_budget"])
        bad = sorted(set(own) & set(BUDGET_KEYS))
        if bad:
            raise RecipeError(
                f"method plugin {name!r}: its equal_budget recipe sets {', '.join(bad)}; the "
                "budget is the same for every method (mrbench.config.recipes.EQUAL_BUDGET)"
            )
    else:
        own = {k: v for k, v in declared.get("official", {}).items() if k not in BUDGET_KEYS}
    return {**own, **EQUAL_BUDGET}


def method_training(cls: type, config: dict, method: str) -> dict[str, Any]:
    """The merged (not yet validated) training section of config entry ``method``."""
    from mrbench.training.settings import TRAINING_DEFAULTS, merge_training

    entry = config["methods"][method]
    recipe = config.get("recipe")
    own = entry.get("training") or {}
    if recipe == "equal_budget":
        bad = sorted(set(own) & set(BUDGET_KEYS))
        if bad:
            raise RecipeError(
                f"config key methods.{method}.training: {', '.join(bad)} would change one "
                "method's budget under recipe equal_budget; set it in the global training section"
            )
    return merge_training(
        TRAINING_DEFAULTS,
        getattr(cls, "training_defaults", {}) or {},
        recipe_training(cls, recipe),
        config.get("training") or {},
        own,
    )
