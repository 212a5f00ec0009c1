"""EfficientNet compound scaling: the admissible grid, the scaled family, the procedure."""
