"""A study's protocol is part of the study: a resume that would measure trials another way is
refused before anything is written, unless the change is asked for and recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.storages.journal._storage import JournalOperation

from nas import ConfigError, compose, run_search
from nas.__main__ import main
from nas._search.objective import LATENCY_SCALE
from nas._trials.study import PROTOCOL, PROTOCOL_CHANGES, StudyProtocol
from tests.test_search import TINY, tiny
from tests.test_tables import nb201_slice, needs_nb201


def journal(run: Path) -> bytes:
    return (run / "study.journal").read_bytes()


def test_a_changed_evaluation_is_refused_in_one_line_with_exit_2_and_the_journal_unchanged(
    tmp_path, capsys
):
    """The issue's case: the same command with evaluator.epochs changed (and a larger budget)."""
    run = tmp_path / "run"
    args = ["search", *TINY, "sampler=random", f"hydra.run.dir={run}"]
    assert main([*args, "search.n_trials=2"]) == 0
    before = journal(run)
    capsys.readouterr()
    assert main([*args, "search.n_trials=4", "evaluator.epochs=1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "nas search: error: the study 'mbconv_pareto' was created with evaluator.epochs=2; this "
        "run has evaluator.epochs=1 (different evaluator). Use a new search.study_name, or pass "
        "search.allow_protocol_change=true to resume anyway (recorded on the study)"
    ]
    assert journal(run) == before


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("search.seed=1", "search.seed=0; this run has search.seed=1"),
        (
            "data.synthetic_size=200",
            "data.synthetic_size=160; this run has data.synthetic_size=200",
        ),
        ("data.val_fraction=0.3", "data.val_fraction=0.2; this run has data.val_fraction=0.3"),
        ("evaluator.lr=0.1", "evaluator.lr=0.02; this run has evaluator.lr=0.1"),
        (
            "latency.max_seconds=0.2",
            "latency.max_seconds=0.1; this run has latency.max_seconds=0.2",
        ),
        (
            "latency.reference=null",
            "latency.reference=default; this run has latency.reference=null",
        ),
        ("latency.clock=wall", "latency.clock=cpu; this run has latency.clock=wall"),
        (
            "search.constraints.max_params=100000",
            "search.constraints.max_params=null; this run has search.constraints.max_params=100000",
        ),
    ],
)
def test_each_setting_that_changes_the_numbers_is_part_of_the_protocol(tmp_path, override, named):
    run_search(tiny("search.n_trials=1", "sampler=random"), run_dir=tmp_path)
    before = journal(tmp_path)
    with pytest.raises(ConfigError, match="was created with " + named.replace(".", r"\.")):
        run_search(tiny("search.n_trials=2", "sampler=random", override), run_dir=tmp_path)
    assert journal(tmp_path) == before


def test_settings_that_do_not_change_the_numbers_stay_free(tmp_path):
    run_search(tiny("search.n_trials=1", "sampler=random"), run_dir=tmp_path)
    free = [
        "search.n_trials=2",
        "sampler=tpe",
        "search.timeout=600",
        "search.progress=true",
        "search.early_stop.margin=0.05",
        "report.hv_reference_latency_ms=100",
        "logger.tags=[resumed]",
    ]
    resumed = run_search(tiny(*free), run_dir=tmp_path)
    assert len(resumed.study.trials) == 2
    assert PROTOCOL_CHANGES not in resumed.study.user_attrs


def test_the_record_is_typed_and_holds_every_group_with_its_defaults(tmp_path):
    result = run_search(tiny("search.n_trials=1", "sampler=random"), run_dir=tmp_path)
    protocol = StudyProtocol.from_attrs(result.study.user_attrs)
    assert protocol is not None
    settings = protocol.settings()
    assert settings["space.name"] == "mbconv" and settings["space.expand"] == [1, 3]
    assert settings["num_classes"] == 4 and settings["search.seed"] == 0
    assert settings["evaluator.name"] == "proxy" and settings["evaluator.epochs"] == 2
    assert settings["data.name"] == "synthetic" and settings["data.split"] == "train"
    assert settings["latency.source"] == "measured" and settings["latency.backend"] == "torch"
    assert settings["latency.reference"] == "default"
    # Earlier versions (and readers of user_attrs) still find the space where it was.
    assert result.study.user_attrs["space"] == "mbconv"
    assert result.study.user_attrs["space_options"] == protocol.space_options


def test_allow_protocol_change_resumes_and_records_the_change(tmp_path, capsys):
    run_search(tiny("search.n_trials=1", "sampler=random"), run_dir=tmp_path)
    changed = ["evaluator.epochs=1", "search.allow_protocol_change=true"]
    resumed = run_search(tiny("search.n_trials=2", "sampler=random", *changed), run_dir=tmp_path)
    err = capsys.readouterr().err
    assert "resumes with a changed protocol (evaluator.epochs=2 -> 1)" in err
    attrs = resumed.study.user_attrs
    (entry,) = attrs[PROTOCOL_CHANGES]
    assert entry["changes"] == [["evaluator.epochs", 2, 1]] and entry["at"]
    assert attrs[PROTOCOL]["evaluator"]["epochs"] == 1  # the study's protocol from now on
    assert len(resumed.study.trials) == 2
    # The new protocol resumes without the override; the old one now needs it.
    again = run_search(
        tiny("search.n_trials=3", "sampler=random", "evaluator.epochs=1"), run_dir=tmp_path
    )
    assert len(again.study.trials) == 3
    with pytest.raises(ConfigError, match=r"evaluator\.epochs=1; this run has evaluator\.epochs=2"):
        run_search(tiny("search.n_trials=4", "sampler=random"), run_dir=tmp_path)


def test_the_latency_reference_cannot_change_even_when_allowed(tmp_path):
    first = run_search(tiny("search.n_trials=1", "sampler=random"), run_dir=tmp_path)
    assert first.study.user_attrs[LATENCY_SCALE]["ms"] is not None
    before = journal(tmp_path)
    changed = ["latency.reference_resolution=64", "search.allow_protocol_change=true"]
    with pytest.raises(ConfigError, match=r"latency\.reference_resolution=96; this run has .*=64"):
        run_search(tiny("search.n_trials=2", *changed), run_dir=tmp_path)
    assert journal(tmp_path) == before


def test_another_latency_backend_is_refused_before_any_trial(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    run_search(tiny("search.n_trials=1", "sampler=random"), run_dir=tmp_path)
    before = journal(tmp_path)
    with pytest.raises(ConfigError, match=r"latency\.backend=torch; this run has .*=onnxruntime"):
        run_search(tiny("search.n_trials=3", "latency.backend=onnxruntime"), run_dir=tmp_path)
    assert journal(tmp_path) == before  # no trial failed one by one


def _strip_protocol(run: Path) -> None:
    """Make the study one of an earlier version: no protocol record in the journal."""
    op = JournalOperation.SET_STUDY_USER_ATTR.value
    lines = journal(run).decode().splitlines(keepends=True)
    kept = [
        line
        for line in lines
        if not (json.loads(line)["op_code"] == op and PROTOCOL in json.loads(line)["user_attr"])
    ]
    assert len(kept) < len(lines)
    (run / "study.journal").write_text("".join(kept))


def test_an_older_study_without_a_record_is_accepted_and_recorded(tmp_path, capsys):
    run_search(tiny("search.n_trials=1", "sampler=random"), run_dir=tmp_path)
    _strip_protocol(tmp_path)
    capsys.readouterr()
    resumed = run_search(tiny("search.n_trials=2", "sampler=random"), run_dir=tmp_path)
    assert "created by an earlier nas without a protocol record" in capsys.readouterr().err
    assert StudyProtocol.from_attrs(resumed.study.user_attrs) is not None
    assert len(resumed.study.trials) == 2
    # From now on the whole protocol is checked.
    with pytest.raises(ConfigError, match=r"evaluator\.epochs=2; this run has evaluator\.epochs=1"):
        run_search(tiny("search.n_trials=3", "evaluator.epochs=1"), run_dir=tmp_path)


def test_an_older_study_is_still_refused_another_space(tmp_path):
    run_search(tiny("search.n_trials=1", "sampler=random"), run_dir=tmp_path)
    _strip_protocol(tmp_path)
    before = journal(tmp_path)
    with pytest.raises(ConfigError, match=r"space\.kernel=\[3\]; this run has space\.kernel=\[5\]"):
        run_search(tiny("search.n_trials=2", "space.kernel=[5]"), run_dir=tmp_path)
    assert journal(tmp_path) == before


# --- measured latency and a benchmark's table -------------------------------------------------

#: Brief timing of NAS-Bench-201's networks on this CPU.
MEASURED = ["latency=cpu", "latency.warmup=1", "latency.min_rounds=3", "latency.max_seconds=0.1"]


def _nb201(path: Path, *extra: str, measured: bool = False):
    latency = MEASURED if measured else [f"latency.path={path}"]
    return compose(
        [
            "conf=nb201_table",
            "space.ops=[none,skip_connect,nor_conv_3x3]",
            f"evaluator.path={path}",
            *latency,
            "search.n_trials=2",
            "search.progress=false",
            "report.plots=false",
            "report.remeasure_front=false",
            *extra,
        ]
    )


@needs_nb201
def test_a_table_study_resumed_with_measured_latency_is_refused(tmp_path):
    path = nb201_slice(tmp_path, ("none", "skip_connect", "nor_conv_3x3"))
    run_search(_nb201(path), run_dir=tmp_path / "run")
    before = journal(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"latency\.source=table; this run has .*=measured"):
        run_search(_nb201(path, "search.n_trials=4", measured=True), run_dir=tmp_path / "run")
    assert journal(tmp_path / "run") == before


@needs_nb201
def test_a_measured_study_resumed_with_a_table_is_refused(tmp_path):
    path = nb201_slice(tmp_path, ("none", "skip_connect", "nor_conv_3x3"))
    run_search(_nb201(path, measured=True), run_dir=tmp_path / "run")
    before = journal(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"latency\.source=measured; this run has .*=table"):
        run_search(_nb201(path, "search.n_trials=4"), run_dir=tmp_path / "run")
    assert journal(tmp_path / "run") == before
