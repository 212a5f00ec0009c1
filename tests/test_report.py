"""Reading a finished run back: nas.load_trials from a run directory, its journal file or a
storage URL, as the typed records the search wrote."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

import nas
from nas import compose, run_search


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    result = run_search(compose(["conf=tiny", "search.n_trials=3", "sampler=random"]), run_dir=run)
    return run, result.study


def test_load_trials_reads_every_trial_of_a_run_directory_in_order(finished):
    run, study = finished
    rows = nas.load_trials(run)
    trials = study.get_trials()
    assert [r.trial for r in rows] == [t.number for t in trials] == [0, 1, 2]
    for row, trial in zip(rows, trials, strict=True):
        assert isinstance(row, nas.TrialRecord)
        assert row.state == trial.state.name and trial.state == TrialState.COMPLETE
        assert (row.accuracy, row.latency_ms) == tuple(trial.values)  # the study's objectives
        assert row.genotype == trial.user_attrs["genotype"] and row.params > 0
    front = nas.pareto_front(rows)
    assert front and {r.trial for r in front} <= {0, 1, 2}


def test_load_trials_takes_the_journal_file_or_a_url_and_a_study_name(finished):
    run, study = finished
    expected = [(r.trial, r.accuracy, r.latency_ms) for r in nas.load_trials(run)]
    journal = run / "study.journal"
    for target in (journal, str(journal)):
        assert [(r.trial, r.accuracy, r.latency_ms) for r in nas.load_trials(target)] == expected
    named = nas.load_trials(run, study_name=study.study_name)
    assert [(r.trial, r.accuracy, r.latency_ms) for r in named] == expected
    with pytest.raises(ValueError, match="no study named 'nope'"):
        nas.load_trials(run, study_name="nope")


def test_load_trials_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match=r"no study\.journal here"):
        nas.load_trials(tmp_path)
    url = f"sqlite:///{tmp_path / 'two.db'}"
    for name in ("first", "second"):
        optuna.create_study(study_name=name, storage=url)
    with pytest.raises(ValueError, match=r"2 studies \(first, second\); give study_name"):
        nas.load_trials(url)
    assert nas.load_trials(url, study_name="second") == []
