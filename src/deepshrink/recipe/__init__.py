"""YAML recipes: one file takes a model from trained to compressed, measured and exported.

``load_recipe`` validates a recipe (every error names the key path), ``prepare`` builds and checks
its model and data, ``run_recipe`` runs it into a folder (resumable), ``plan_recipe`` says what each
stage will do without running anything. See ``docs/recipes.md``.
"""

from __future__ import annotations

from deepshrink.recipe.run import Prepared, RunResult, load_recipe, prepare, run_recipe
from deepshrink.recipe.schema import RECIPE_VERSION, STAGES, Recipe, Stage, parse_recipe

__all__ = [
    "RECIPE_VERSION",
    "STAGES",
    "Prepared",
    "Recipe",
    "RunResult",
    "Stage",
    "load_recipe",
    "parse_recipe",
    "prepare",
    "run_recipe",
]
