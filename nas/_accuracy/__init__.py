"""Accuracy: evaluators behind one protocol (proxy training, training-free scores, tables)."""
