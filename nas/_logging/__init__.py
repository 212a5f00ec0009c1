"""Experiment loggers: the logger protocol and the wandb logger."""
