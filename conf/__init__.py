"""Hydra configs of nas (a package so that they are found once nas is installed)."""
