"""Latency: settings, backends, latency sources (measured, table, block predictor), profiles."""
