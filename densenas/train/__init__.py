"""Retraining and evaluating searched networks and torchvision reference models.

Names load lazily so that reading and checking a recipe (``densenas.train.recipe``)
does not import torch: a bad recipe is reported at once.
"""

from densenas.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "recipe": "TrainRecipe TrainJob build_job default_recipe_name load_recipe parse_recipe lr_at",
    "trainer": "Trainer TrainingDiverged train",
    "evaluate": "CHECKPOINT_SCHEMA WEIGHTS_SCHEMA EvalResult NetworkSpec WeightsFile build_network evaluate "
                "evaluate_weights load_weights network_spec",
})
