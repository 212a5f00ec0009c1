"""Data: datasets, their readers and benchmark tables."""
