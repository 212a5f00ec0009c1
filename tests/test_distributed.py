"""Many workers on one study: an exact shared budget, no trial duplicated or lost, grids once.

The PostgreSQL tests need a real server: ``.ci/run`` starts one and exports
``NAS_TEST_POSTGRES_URL``; without it they are skipped.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from nas import run_search
from nas._search.run import space_from_config
from nas._search.study import open_study
from nas._storage.gate import make_gate
from nas._storage.recovery import budget_used, retried_numbers
from nas._storage.storage import make_storage, sqlalchemy_url
from nas._storage.workers import run_trials
from nas._trials.record import TrialRecord
from tests.test_search import TINY, tiny

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("NAS_TEST_POSTGRES_URL")
#: The same URL with the installed driver spelt out, for tests that open Optuna storage directly.
PG_STORAGE = sqlalchemy_url(POSTGRES_URL) if POSTGRES_URL else None
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="NAS_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)",
)
#: A 3-stage MBConv space of 8 networks (expand 1 or 3 per stage): a grid small enough to finish.
GRID8 = [
    "sampler=grid",
    "space.stages=[[1,3,1,16,16,1],[3,3,2,16,24,1],[3,3,2,24,32,1]]",
    "space.expand=[1,3]",
]


# --- helpers shared with test_crash.py ------------------------------------------------------


def cli_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start_cli(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """``python -m nas ARGS`` in the background, its output in ``log`` (a pipe could fill up)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "nas", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=cli_env(),
        )


def finish(proc: subprocess.Popen[bytes], log: Path, *, timeout: float = 300) -> str:
    """Wait for a background CLI; return its output."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log.read_text(errors="replace")


def journal_study(path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))


def wait_for(predicate: Any, *, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180):
    """Poll ``predicate()`` until it returns a true value (the CLI must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (KeyError, FileNotFoundError):  # the study or its file does not exist yet
            value = None
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the search ended before the condition held:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"condition not reached in {timeout} s:\n{log.read_text()[-3000:]}")


def check_budget_exact(trials: Sequence[FrozenTrial], budget: int) -> None:
    """Exactly ``budget`` finished trials, nothing left running or waiting, numbers distinct."""
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)
    assert sorted(numbers) == list(range(len(numbers))), "a trial number is missing"
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    retried = retried_numbers(trials)
    counted = [t for t in trials if t.number not in retried]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in counted), [
        (t.number, t.state.name, t.user_attrs.get("failure")) for t in counted
    ]
    assert len(counted) == budget_used(trials) == budget


def check_each_network_evaluated_once(trials: Sequence[FrozenTrial]) -> None:
    """No genotype trained twice: repeats are recorded reuses of the one evaluated trial."""
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    evaluated = [t for t in done if t.user_attrs.get("duplicate_of") is None]
    keys = [t.user_attrs["genotype_key"] for t in evaluated]
    assert len(set(keys)) == len(keys), "a network was evaluated by two trials"
    by_number = {t.number: t for t in evaluated}
    for t in done:
        origin = t.user_attrs.get("duplicate_of")
        if origin is None:
            continue
        first = by_number[origin]
        assert first.user_attrs["genotype_key"] == t.user_attrs["genotype_key"]
        # A repeat is told to the sampler as pruned (a grid's as the earlier result); its record
        # holds the earlier result either way.
        if t.state == TrialState.COMPLETE:
            assert first.state == t.state and first.values == t.values
        else:
            assert t.state == TrialState.PRUNED, (t.number, t.state.name)
        mine, theirs = TrialRecord.of(t), TrialRecord.of(first)
        assert (mine.accuracy, mine.latency_ms) == (theirs.accuracy, theirs.latency_ms)


def describe(trials: Sequence[FrozenTrial]) -> str:
    """One line per trial, for assertion messages."""
    return "\n".join(
        f"{t.number} {t.state.name} pid={t.user_attrs.get('worker', {}).get('pid')} "
        f"point={t.system_attrs.get('fixed_params') or t.params} "
        f"dup={t.user_attrs.get('duplicate_of')} retry_of={t.user_attrs.get('retry_of')} "
        f"failure={t.user_attrs.get('failure')}"
        for t in trials
    )


def worker_pids(trials: Sequence[FrozenTrial]) -> set[int]:
    return {t.user_attrs["worker"]["pid"] for t in trials}


@pytest.fixture(name="pg_study")
def pg_study_fixture() -> Iterator[str]:
    """A fresh study name on the test PostgreSQL server, deleted afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=name, storage=PG_STORAGE)


# --- the gate and the budget, with a trivial objective (fast) --------------------------------


def _flat_objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0.0, 1.0)


def _budget_worker(url: str | None, journal: str, name: str, budget: int, barrier: Any) -> None:
    run_dir = Path(journal).parent
    storage = make_storage(url or journal, run_dir=run_dir)
    study = optuna.load_study(study_name=name, storage=storage)
    gate = make_gate(storage, url=url or journal, run_dir=run_dir, study_name=name)
    barrier.wait()  # every worker checks the budget at the same moment
    run_trials(study, _flat_objective, storage=storage, gate=gate, n_trials=budget, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["journal", "sqlite", pytest.param("postgres", marks=needs_postgres)]
)
def test_four_processes_at_once_use_the_budget_exactly(tmp_path, backend):
    """Four workers that start together on a budget of three run three trials, not four.

    Without the gate all four see an empty study and ask (measured: 4 trials every time);
    Optuna's MaxTrialsCallback would also let them overshoot.
    """
    name = f"budget_{uuid.uuid4().hex[:8]}"
    journal = str(tmp_path / "study.journal")
    url = {"postgres": POSTGRES_URL, "sqlite": f"sqlite:///{tmp_path}/study.db"}.get(backend)
    storage = make_storage(url or journal, run_dir=tmp_path)
    optuna.create_study(study_name=name, storage=storage)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [
        ctx.Process(target=_budget_worker, args=(url, journal, name, 3, barrier)) for _ in range(4)
    ]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=180)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        check_budget_exact(trials, 3)
        assert len(worker_pids(trials)) >= 2, "the workers did not share the study"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        if url:
            optuna.delete_study(study_name=name, storage=storage)


@needs_postgres
def test_postgres_gate_excludes_other_connections():
    from nas._storage.gate import _PostgresGate

    check_gate_excludes(
        _PostgresGate(POSTGRES_URL, "gate-test"), _PostgresGate(POSTGRES_URL, "gate-test")
    )


def check_gate_excludes(gate_a: Any, gate_b: Any) -> None:
    """While ``gate_a`` is held, ``gate_b`` (another connection or file handle) must wait."""
    entered = threading.Event()
    with gate_a():

        def enter_b() -> None:
            with gate_b():
                entered.set()

        thread = threading.Thread(target=enter_b, daemon=True)
        thread.start()
        assert not entered.wait(1.0), "a second holder entered a held gate"
    assert entered.wait(30), "the gate was not released"
    thread.join(30)


def test_sqlite_gate_is_a_file_lock_that_excludes_other_holders(tmp_path):
    from nas._storage.gate import _FileGate

    url = f"sqlite:///{tmp_path}/study.db"
    storage = make_storage(url, run_dir=tmp_path)
    gate_a = make_gate(storage, url=url, run_dir=tmp_path, study_name="s")
    gate_b = make_gate(storage, url=url, run_dir=tmp_path, study_name="s")
    assert isinstance(gate_a, _FileGate) and gate_a.path == tmp_path / "study.db.gate"
    check_gate_excludes(gate_a, gate_b)


def test_a_search_on_sqlite_stores_and_resumes_its_study(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    run_search(tiny("search.n_trials=2", f"storage.url={url}"), run_dir=tmp_path)
    assert len(optuna.load_study(study_name="mbconv_pareto", storage=url).get_trials()) == 2
    again = run_search(tiny("search.n_trials=3", f"storage.url={url}"), run_dir=tmp_path)
    trials = optuna.load_study(study_name="mbconv_pareto", storage=url).get_trials()
    assert len(trials) == 3 == len(again.results.rows)
    assert not (tmp_path / "study.journal").exists(), "the journal default was not used"


def _first_samples(cfg: Any, run_dir: Path, n: int = 4) -> list[dict[str, Any]]:
    space = space_from_config(cfg.space)
    study, _ = open_study(cfg, run_dir=run_dir, space=space, num_classes=4)
    samples = []
    for _ in range(n):
        trial = study.ask()
        samples.append(space.sample(trial))
        study.tell(trial, state=TrialState.FAIL)
    return samples


def test_each_worker_of_a_study_samples_its_own_sequence(tmp_path):
    """Two workers started with one command (or a resume) must not propose the same networks."""
    cfg = tiny("sampler=random")
    first = _first_samples(cfg, tmp_path / "a")
    second = _first_samples(cfg, tmp_path / "a")  # a second worker on the same study
    alone = _first_samples(cfg, tmp_path / "b")  # the first worker of another study
    assert first == alone, "the first worker keeps search.seed (reproducible runs)"
    assert second != first


# --- real searches -----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_on_the_journal_file(tmp_path):
    result = run_search(
        tiny("search.n_trials=8", "sampler=random", "search.n_workers=2"), run_dir=tmp_path
    )
    trials = journal_study(tmp_path / "study.journal", result.study.study_name).get_trials()
    check_budget_exact(trials, 8)
    check_each_network_evaluated_once(trials)
    assert len(worker_pids(trials)) == 2, "both workers take trials"
    assert len(result.results.rows) == 8, "results are written after every worker finished"


@pytest.mark.slow
@needs_postgres
def test_two_cli_processes_share_a_postgres_study(tmp_path, pg_study):
    """The multi-machine recipe: the same command started twice on one PostgreSQL study."""
    args = [
        "search",
        *TINY,
        "sampler=random",
        "search.n_trials=10",
        f"search.study_name={pg_study}",
        f"storage.url={POSTGRES_URL}",
    ]
    procs = [
        (start_cli(*args, f"hydra.run.dir={tmp_path / f'run{i}'}", log=tmp_path / f"{i}.log"), i)
        for i in (0, 1)
    ]
    outputs = [finish(p, tmp_path / f"{i}.log") for p, i in procs]
    for (p, _), out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    trials = optuna.load_study(study_name=pg_study, storage=PG_STORAGE).get_trials()
    check_budget_exact(trials, 10)
    check_each_network_evaluated_once(trials)
    assert worker_pids(trials) == {p.pid for p, _ in procs}, describe(trials)
    # Each process wrote the results it saw; the later one saw every trial.
    counts = [
        len((tmp_path / f"run{i}" / "trials.csv").read_text().splitlines()) - 1 for i in (0, 1)
    ]
    assert max(counts) == 10


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", pytest.param("postgres", marks=needs_postgres)])
def test_grid_under_two_workers_evaluates_each_point_once(tmp_path, backend, pg_study):
    extra = (
        [f"storage.url={POSTGRES_URL}", f"search.study_name={pg_study}"]
        if backend == "postgres"
        else []
    )
    cfg = tiny(*GRID8, "search.n_trials=100", "search.n_workers=2", *extra)
    result = run_search(cfg, run_dir=tmp_path)
    trials = result.study.get_trials()
    assert len(trials) == 8, describe(trials)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    points = {tuple(sorted(t.params.items())) for t in trials}
    assert len(points) == 8, "every grid point once"
    assert all(t.user_attrs.get("duplicate_of") is None for t in trials)
    assert len(worker_pids(trials)) == 2
    # Running the command again enqueues nothing and evaluates nothing more.
    again = run_search(tiny(*GRID8, "search.n_trials=100", *extra), run_dir=tmp_path)
    assert len(again.study.get_trials()) == 8


@pytest.mark.slow
def test_accuracies_are_the_same_with_two_workers_and_across_a_resume(tmp_path):
    from tests.test_search import FOUR, accuracies

    def grid(n_trials: int, *extra: str) -> Any:
        return tiny(
            *FOUR,
            "sampler=grid",
            f"search.n_trials={n_trials}",
            "search.early_stop.enabled=false",
            *extra,
        )

    alone = accuracies(run_search(grid(4), run_dir=tmp_path / "alone"))
    assert len(alone) == 4
    two = accuracies(run_search(grid(4, "search.n_workers=2"), run_dir=tmp_path / "two"))
    assert two == alone
    run_search(grid(2), run_dir=tmp_path / "resumed")
    resumed = accuracies(run_search(grid(4), run_dir=tmp_path / "resumed"))
    assert resumed == alone


def _open_storage(url: str, barrier: Any, errors: Any) -> None:
    barrier.wait()
    try:
        make_storage(url, run_dir=Path("."))
    except Exception as err:  # reported to the test
        errors.put(f"{type(err).__name__}: {err}")


@needs_postgres
def test_workers_started_together_on_an_empty_database_all_open_it():
    # Optuna creates its tables when a storage opens; three at once on an empty database race
    # for them (PostgreSQL: duplicate pg_type rows) unless the loser retries.
    import sqlalchemy

    schema = f"race_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(PG_STORAGE)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        ctx = multiprocessing.get_context("spawn")
        barrier, errors = ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_open_storage, args=(url, barrier, errors)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        found = []
        while not errors.empty():
            found.append(errors.get())
        assert not found, found
        assert all(p.exitcode == 0 for p in procs)
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
