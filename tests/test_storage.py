"""storage=memory: a study kept in the process, nothing written but the results files."""

from __future__ import annotations

import json

from optuna.trial import TrialState

from nas import compose, run_search


def test_storage_memory_runs_a_search_and_writes_no_study_file(tmp_path):
    cfg = compose(["conf=tiny", "storage=memory", "search.n_trials=2", "sampler=random"])
    assert cfg.storage.url == ":memory:"
    result = run_search(cfg, run_dir=tmp_path)
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert doc["front"]
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    # The results only: no study.journal, nor its gate (study.journal.gate), nor any other file.
    assert {"pareto.json", "trials.csv"} <= set(written)
    assert [p for p in written if p not in ("pareto.json", "trials.csv")] == [
        "archs",
        *sorted(f"archs/trial_{r['trial']}.yaml" for r in doc["front"]),
    ]
