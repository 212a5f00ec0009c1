"""Measurement: data, proxy training and training-free scores, latency, lookup table, profile."""
