"""The search: the objective, early stopping, samplers, the study and run_search."""
