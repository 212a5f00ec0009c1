"""A study's protocol is part of the study: a resume that would measure trials another way is
refused before anything is written, unless the change is asked for and recorded."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from nas import ArchFileError, ConfigError, TrialRecord, compose, load_arch, run_search
from nas.__main__ import main
from nas._search.objective import LATENCY_SCALE
from nas._storage.recovery import fail_stale_twins, recover_dead_trials
from nas._storage.storage import make_storage
from nas._trials.record import FAILURE, write_identity, write_worker
from nas._trials.study import PROTOCOL, PROTOCOL_CHANGES, StudyProtocol
from nas.space import make_space
from tests.test_distributed import POSTGRES_URL, needs_postgres
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
    """Make the study one of an earlier version: no protocol record in the journal. The study
    is written again through Optuna's public API (its name, directions, every other user
    attribute and every trial) into a new journal that then takes the old one's place."""
    old_storage = JournalStorage(JournalFileBackend(str(run / "study.journal")))
    (summary,) = optuna.get_all_study_summaries(old_storage)
    old = optuna.load_study(study_name=summary.study_name, storage=old_storage)
    assert PROTOCOL in old.user_attrs
    older = run / "older.journal"
    new = optuna.create_study(
        study_name=old.study_name,
        storage=JournalStorage(JournalFileBackend(str(older))),
        directions=old.directions,
    )
    for key, value in old.user_attrs.items():
        if key != PROTOCOL:
            new.set_user_attr(key, value)
    new.add_trials(old.get_trials())
    older.replace(run / "study.journal")


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


# --- failures reported as what they are ---------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"weights": "trial_3.pt"},  # a key a later version added
        {"resolution": None},  # a key a later version dropped
    ],
)
def test_an_architecture_file_of_another_schema_version_names_the_version(tmp_path, capsys, change):
    space = make_space("mbconv", resolution=32)
    data = space.arch(space.random_genotype(0), num_classes=10).to_dict()
    data["schema_version"] = 2
    for key, value in change.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ArchFileError, match="schema_version 2 is not supported"):
        load_arch(path)
    assert main(["show", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"nas show: error: {path}: schema_version 2 is not supported (this nas reads version 1)"
    )


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_a_trial_failed_through_the_heartbeats_carries_a_failure_note(tmp_path, backend):
    url = f"sqlite:///{tmp_path / 'study.db'}" if backend == "sqlite" else POSTGRES_URL
    name = f"heartbeats_{uuid.uuid4().hex[:12]}"
    storage = make_storage(url, run_dir=tmp_path, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name=name, storage=storage)
    try:
        trial = study.ask()
        write_identity(trial, {"x": trial.suggest_int("x", 0, 9)}, "x")
        write_worker(trial, host="elsewhere", pid=4242)  # a worker on a machine now gone
        storage.record_heartbeat(trial._trial_id)
        time.sleep(3.0)  # no heartbeat for longer than the grace period
        assert recover_dead_trials(study, storage) == [trial.number]
        failed = study.get_trials()[trial.number]
        assert failed.state == TrialState.FAIL
        assert failed.user_attrs[FAILURE] == (
            "no heartbeat for 1 s: worker 4242 on elsewhere stopped during the trial"
        )
        assert TrialRecord.of(failed).note == failed.user_attrs[FAILURE]
        (retry,) = [t for t in study.get_trials() if t.state == TrialState.WAITING]
        assert retry.params == failed.params and FAILURE not in retry.user_attrs
    finally:
        if backend == "postgres":
            optuna.delete_study(study_name=name, storage=storage)


def test_a_twin_whose_worker_stopped_is_failed_with_its_note_for_the_waiting_worker(tmp_path):
    """What a worker waiting on an identical network calls (nas._search.objective): the twin of
    a machine now gone is failed through the heartbeats with nas's note, and retried."""
    storage = make_storage(
        f"sqlite:///{tmp_path / 'study.db'}", run_dir=tmp_path, heartbeat_interval=1, grace_period=1
    )
    study = optuna.create_study(study_name="twins", storage=storage)
    trial = study.ask()
    write_identity(trial, {"x": trial.suggest_int("x", 0, 9)}, "x")
    write_worker(trial, host="elsewhere", pid=4242)
    storage.record_heartbeat(trial._trial_id)
    assert fail_stale_twins(study) == []  # its heartbeat is fresh
    time.sleep(3.0)
    assert fail_stale_twins(study) == [trial.number]
    failed = study.get_trials()[trial.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs[FAILURE].startswith("no heartbeat for 1 s: worker 4242 on elsewhere")
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]
    journal = optuna.create_study(
        study_name="twins", storage=make_storage(None, run_dir=tmp_path / "journal")
    )
    journal.ask()
    assert fail_stale_twins(journal) == []  # a journal has no heartbeats


@pytest.mark.slow
def test_a_multirun_whose_job_fails_exits_non_zero(tmp_path):
    """Hydra's submitit launcher, as for Slurm, with local processes for jobs: a job whose
    search fails (here a bad budget) fails the command, naming the job and its error."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nas",
            "search",
            "-m",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=5",
            *TINY,
            "search.n_trials=0",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.returncode != 0, out.stderr[-2000:]
    assert (
        "nas search: error: job 0 of the multirun failed (exit status 2): "
        "search.n_trials must be >= 1, got 0"
    ) in out.stderr.splitlines(), out.stderr[-2000:]
