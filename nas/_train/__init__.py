"""Training a found architecture into a deployable model: recipe, distillation, pruning, report."""
