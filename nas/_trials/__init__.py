"""Study data: the trial record, the study index, the Pareto front (the bottom layer)."""
