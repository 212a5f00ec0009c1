"""Reports: the Pareto front, results files, plots, tables, and reading runs back."""
