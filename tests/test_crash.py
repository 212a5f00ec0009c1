"""Crash safety: kill -9 and resume, Ctrl-C, trials that raise / go NaN / run out of memory,
and results files that are never seen half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from optuna.trial import TrialState
from torch import nn

import nas
import nas._spaces.registry
import nas._storage.recovery as recovery
from nas import run_search
from nas._io import atomic_write_text
from nas._storage.recovery import retried_numbers
from nas._storage.storage import make_storage
from tests.test_distributed import (
    PG_STORAGE,
    POSTGRES_URL,
    ROOT,
    check_budget_exact,
    check_each_network_evaluated_once,
    cli_env,
    describe,
    journal_study,
    needs_postgres,
    pg_study_fixture,  # noqa: F401  (the pg_study fixture)
    start_cli,
    wait_for,
)
from tests.test_search import TINY, tiny

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _mid_trial(load: Any) -> Any:
    """A predicate: a trial has finished and another is being evaluated (its network sampled)."""

    def ready() -> bool:
        trials = load().get_trials(deepcopy=False)
        done = [t for t in trials if t.state in FINISHED]
        running = [
            t for t in trials if t.state == TrialState.RUNNING and "genotype" in t.user_attrs
        ]
        return bool(done and running)

    return ready


def _check_results(run: Path, trials: list[Any]) -> None:
    """pareto.json, trials.csv and the front's architecture files are complete and parse."""
    doc = json.loads((run / "pareto.json").read_text())
    assert doc["n_trials"] == len(trials)
    assert doc["front"], "finished trials give a front"
    lines = (run / "trials.csv").read_text().splitlines()
    assert len(lines) == len(trials) + 1
    for rec in doc["front"]:
        assert nas.load_arch(run / rec["arch_file"]).genotype
    assert not list(run.rglob("*.tmp")), "no temporary file left behind"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", pytest.param("postgres", marks=needs_postgres)])
def test_kill_9_mid_search_then_the_same_command_finishes(tmp_path, backend, pg_study):
    run = tmp_path / "run"
    if backend == "journal":
        extra: list[str] = []

        def load() -> optuna.Study:
            return journal_study(run / "study.journal", "mbconv_pareto")
    else:
        extra = [
            f"storage.url={POSTGRES_URL}",
            f"search.study_name={pg_study}",
            "storage.heartbeat_interval=1",
            "storage.grace_period=3",
        ]

        def load() -> optuna.Study:
            return optuna.load_study(study_name=pg_study, storage=PG_STORAGE)

    args = ["search", *TINY, "sampler=random", "search.n_trials=4", f"hydra.run.dir={run}", *extra]
    proc = start_cli(*args, log=tmp_path / "first.log")
    wait_for(_mid_trial(load), proc=proc, log=tmp_path / "first.log")
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    killed = load().get_trials()
    finished = {t.number: t for t in killed if t.state in FINISHED}
    interrupted = {t.number: t for t in killed if t.state == TrialState.RUNNING}
    assert finished and interrupted, describe(killed)

    again = subprocess.run(
        [sys.executable, "-m", "nas", *args],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    trials = load().get_trials()
    by_number = {t.number: t for t in trials}
    for number, before in finished.items():
        after = by_number[number]
        assert (after.state, after.values, after.user_attrs) == (
            before.state,
            before.values,
            before.user_attrs,
        ), f"finished trial {number} changed"
    retried = retried_numbers(trials)
    for number, before in interrupted.items():
        after = by_number[number]
        assert after.state == TrialState.FAIL, describe(trials)
        assert "died" in after.user_attrs.get("failure", ""), describe(trials)
        assert number in retried, "the interrupted trial is retried"
        retry = next(
            t
            for t in trials
            if number in (t.user_attrs.get("retry_of"), t.system_attrs.get("failed_trial"))
        )
        assert retry.params == before.params and retry.state in FINISHED
    check_budget_exact(trials, 4)
    check_each_network_evaluated_once(trials)
    _check_results(run, trials)


@pytest.mark.slow
@pytest.mark.parametrize("n_workers", [1, 2])
def test_ctrl_c_saves_finished_trials_and_writes_results(tmp_path, n_workers):
    """SIGINT to the whole process group, as a terminal's Ctrl-C does (workers included);
    then, once, the same command again."""
    run = tmp_path / "run"
    args = [
        "search",
        *TINY,
        "sampler=random",
        "search.n_trials=6",
        f"search.n_workers={n_workers}",
        f"hydra.run.dir={run}",
    ]
    log = tmp_path / "first.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nas", *args],
            cwd=ROOT,
            env=cli_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def load() -> optuna.Study:
        return journal_study(run / "study.journal", "mbconv_pareto")

    try:
        wait_for(_mid_trial(load), proc=proc, log=log)
        before = {t.number: t for t in load().get_trials() if t.state in FINISHED}
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log.read_text()
    assert proc.returncode == 130, output[-3000:]
    assert "interrupted" in output and "Traceback" not in output, output[-3000:]

    trials = load().get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING], describe(trials)
    for number, t in before.items():
        assert by_state(trials, number) == (t.state, t.values)
    stopped = [t for t in trials if t.user_attrs.get("failure") == "interrupted (Ctrl-C)"]
    assert stopped, describe(trials)
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert {t.user_attrs["retry_of"] for t in waiting} == {t.number for t in stopped}
    doc = json.loads((run / "pareto.json").read_text())
    assert doc["n_trials"] == len(trials), "results written for what exists"

    if n_workers == 1:
        return
    # The same command again runs the interrupted trials first and completes the budget.
    out = subprocess.run(
        [sys.executable, "-m", "nas", *args],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    trials = load().get_trials()
    check_budget_exact(trials, 6)
    _check_results(run, trials)


def by_state(trials: list[Any], number: int) -> tuple[Any, Any]:
    t = next(t for t in trials if t.number == number)
    return t.state, t.values


def test_recovery_fails_trials_of_dead_or_unrecorded_workers_and_retries_once(
    tmp_path, monkeypatch
):
    storage = make_storage(None, run_dir=tmp_path)
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    live = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    live.set_user_attr("worker", {"host": recovery.HOST, "pid": os.getpid()})
    dead = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout
    dead.set_user_attr("worker", {"host": recovery.HOST, "pid": int(gone)})
    dead.set_user_attr("genotype", dead.params)  # its network was sampled and recorded
    unclaimed = study.ask()  # killed between ask and recording its worker
    monkeypatch.setattr(recovery, "UNCLAIMED_AFTER_S", 0.0)

    assert recovery.recover_dead_trials(study, storage) == [dead.number, unclaimed.number]
    trials = study.get_trials()
    assert trials[live.number].state == TrialState.RUNNING
    assert trials[dead.number].state == trials[unclaimed.number].state == TrialState.FAIL
    assert "died during the trial" in trials[dead.number].user_attrs["failure"]
    retry, fresh = [t for t in trials if t.state == TrialState.WAITING]
    assert retry.user_attrs == {"retry_of": dead.number, "retries": 1}
    assert retry.system_attrs["fixed_params"] == dead.params
    # No network sampled yet: its retry samples one afresh, and the lost trial does not count.
    assert fresh.user_attrs == {"retry_of": unclaimed.number, "retries": 1}
    assert fresh.system_attrs["fixed_params"] == {}
    assert recovery.budget_used(trials) == 1  # the live trial
    assert recovery.recover_dead_trials(study, storage) == [], "recovered once"


def test_a_network_that_keeps_killing_its_worker_is_retried_at_most_twice(tmp_path):
    storage = make_storage(None, run_dir=tmp_path)
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    gone = int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout
    )
    study.enqueue_trial({"x": 3})
    deaths = []
    for _ in range(recovery.MAX_RETRIES + 2):
        waiting = [t for t in study.get_trials() if t.state == TrialState.WAITING]
        if not waiting:
            break
        trial = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
        assert trial.params == {"x": 3}, "the retry runs the same network"
        trial.set_user_attr("worker", {"host": recovery.HOST, "pid": gone})
        trial.set_user_attr("genotype", trial.params)
        deaths += recovery.recover_dead_trials(study, storage)
    trials = study.get_trials()
    assert len(deaths) == recovery.MAX_RETRIES + 1 == 3, "the first run and two retries"
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    assert [t.user_attrs.get("retries", 0) for t in trials] == [0, 1, 2]
    assert trials[-1].user_attrs["failure"].endswith("(not retried again)")
    assert not any(t.state == TrialState.WAITING for t in trials)
    # The last failure counts towards the budget; the two retried ones do not.
    assert recovery.budget_used(trials) == 1


def test_a_signal_during_a_journal_write_waits_for_its_end_and_the_first_names_it(
    tmp_path, monkeypatch
):
    # Seen in CI: a Ctrl-C landing inside Optuna's journal lock release turned into a
    # FileNotFoundError, the trial failed as an ordinary error and the worker carried on; and
    # the parent's clean-up SIGTERM, arriving while a worker recorded its Ctrl-C, renamed it.
    from optuna.storages.journal import JournalFileOpenLock

    from nas._storage.interrupts import Interrupts
    from nas._storage.journal import JournalFile

    interrupts = Interrupts()
    monkeypatch.setattr("nas._storage.journal.INTERRUPTS", interrupts)
    path = tmp_path / "study.journal"
    journal = JournalFile(str(path), lock_obj=JournalFileOpenLock(str(path)))
    release = JournalFileOpenLock.release

    def release_with_signals(lock: JournalFileOpenLock) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        release(lock)

    monkeypatch.setattr(JournalFileOpenLock, "release", release_with_signals)
    written = []
    with pytest.raises(KeyboardInterrupt), interrupts.installed(), interrupts.evaluation():
        journal.append_logs([{"op_code": 0, "worker_id": "w", "study_name": "s"}])
        written.append("after the write")
    assert not written, "the interrupt comes right after the write"
    assert interrupts.reason == "Ctrl-C"
    assert len(path.read_text().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.journal"], "lock released"


def test_a_ctrl_c_while_results_are_written_is_one_line(tmp_path, monkeypatch, capsys):
    """A Ctrl-C after the trials (here: while the results files are written) prints one line,
    exits 130, and the same command afterwards writes the results from the intact study."""
    from nas.__main__ import main

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    command = ["search", *TINY, "search.n_trials=2", f"hydra.run.dir={tmp_path}"]
    monkeypatch.setattr("nas._search.run.write_results", interrupted)
    assert main(command) == 130
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("nas search: interrupted; finished trials are saved")
    assert not (tmp_path / "pareto.json").exists()
    monkeypatch.undo()
    assert main(command) == 0
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert doc["n_trials"] == 2


@pytest.mark.parametrize("sampled", [0, 1, 2])
def test_an_interrupt_requeues_the_trials_network_or_a_fresh_one_if_unsampled(tmp_path, sampled):
    # Ctrl-C or SIGTERM while a trial samples its network (``sampled`` of its two choices made)
    # or evaluates it (2: all made and recorded): the retry runs the same network once it is
    # known, and samples afresh before (fixing some choices would make it another network).
    import nas._storage.workers as workers
    from nas._storage.gate import make_gate

    storage = make_storage(None, run_dir=tmp_path)
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = {k: trial.suggest_int(k, 0, 9) for k in ("a", "b")[:sampled]}
        if sampled == 2:
            trial.set_user_attr("genotype", params)
        raise KeyboardInterrupt

    gate = make_gate(storage, url=None, run_dir=tmp_path, study_name=study.study_name)
    with pytest.raises(KeyboardInterrupt):
        workers.run_trials(study, objective, storage=storage, gate=gate, n_trials=3, timeout=None)
    failed, retry = study.get_trials()
    assert failed.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.user_attrs == {"retry_of": failed.number}
    expected = failed.params if sampled == 2 else {}
    assert retry.system_attrs["fixed_params"] == expected
    assert recovery.budget_used(study.get_trials()) == 0


@pytest.mark.slow
def test_sigterm_fails_and_requeues_the_running_trial_and_exits_130(tmp_path):
    """What Slurm's time limit, `kill` and a closing terminal send."""
    run = tmp_path / "run"
    args = ["search", *TINY, "sampler=random", "search.n_trials=6", f"hydra.run.dir={run}"]
    log = tmp_path / "first.log"
    proc = start_cli(*args, log=log)

    def load() -> optuna.Study:
        return journal_study(run / "study.journal", "mbconv_pareto")

    try:
        wait_for(_mid_trial(load), proc=proc, log=log)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert proc.returncode == 130, output[-3000:]
    assert "interrupted" in output and "Traceback" not in output, output[-3000:]
    trials = load().get_trials()
    stopped = [t for t in trials if t.user_attrs.get("failure") == "interrupted (SIGTERM)"]
    assert len(stopped) == 1 and stopped[0].state == TrialState.FAIL, describe(trials)
    (waiting,) = [t for t in trials if t.state == TrialState.WAITING]
    assert waiting.user_attrs["retry_of"] == stopped[0].number
    assert json.loads((run / "pareto.json").read_text())["n_trials"] == len(trials)


def test_the_journal_syncs_at_trial_creation_and_end_not_at_every_record(tmp_path, monkeypatch):
    """Optuna fsyncs each of ~45 records a trial (4 ms each here); finished trials stay durable."""
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    storage = make_storage(None, run_dir=tmp_path)
    study = optuna.create_study(storage=storage)
    calls.clear()
    trial = study.ask()
    for i in range(10):
        trial.suggest_int(f"p{i}", 0, 9)
        trial.set_user_attr(f"a{i}", i)
    after_ask = len(calls)
    study.tell(trial, 1.0)
    assert after_ask == 1, "creating the trial is synced, filling it in is not"
    assert len(calls) == 2, "telling it is synced (and with it every record before)"
    text = (tmp_path / "study.journal").read_text()
    assert text.count("\n") == len(text.splitlines()), "whole records only"


# --- trials that fail ------------------------------------------------------------------------


class _Faulty(nn.Module):
    """Fine in eval mode (so latency is measured); in training it fails as ``mode`` says."""

    def __init__(self, mode: str, num_classes: int) -> None:
        super().__init__()
        self.mode = mode
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.conv(x).mean((2, 3)))
        if self.training:
            if self.mode == "raise":
                raise RuntimeError("boom in forward")
            if self.mode == "oom":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            if self.mode == "nan":
                return y * float("nan")
        return y


class FaultySpace(nas.space.SearchSpace):
    """One choice, how the network fails: a grid of four trials, one per mode."""

    def __init__(self, *, resolution: int = 16) -> None:
        super().__init__(resolution=resolution)

    @property
    def choices(self) -> tuple[nas.space.Choice, ...]:
        return (nas.space.Choice("mode", ("ok", "raise", "nan", "oom")),)

    def build(self, genotype: dict[str, Any], *, num_classes: int) -> nn.Module:
        return _Faulty(str(genotype["mode"]), num_classes)

    def options(self) -> dict[str, Any]:
        return {"resolution": self.resolution}


@pytest.fixture
def faulty_space(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``faulty`` registered for this test only (other tests list the registered spaces)."""
    monkeypatch.setattr(nas._spaces.registry, "_REGISTRY", dict(nas._spaces.registry._REGISTRY))
    nas.space.register_space("faulty")(FaultySpace)
    yield "faulty"


def test_a_trial_that_raises_oom_or_nan_is_failed_with_its_reason(tmp_path, faulty_space):
    cfg = tiny("sampler=grid", "search.n_trials=4", "search.early_stop.enabled=false")
    with open_dict(cfg):
        cfg.space = OmegaConf.create({"name": faulty_space, "resolution": 16})
    result = run_search(cfg, run_dir=tmp_path)
    trials = {t.params["mode"]: t for t in result.study.get_trials()}
    assert set(trials) == {"ok", "raise", "nan", "oom"}, "the study went on after each failure"
    assert trials["ok"].state == TrialState.COMPLETE
    reasons = {
        "raise": "RuntimeError: boom in forward",
        "oom": "OutOfMemoryError: CUDA out of memory",
        "nan": "NonFiniteLossError",
    }
    for mode, reason in reasons.items():
        t = trials[mode]
        assert t.state == TrialState.FAIL
        assert t.user_attrs["failure"].startswith(reason), t.user_attrs["failure"]
    rows = {r.trial: r for r in result.results.rows}
    assert rows[trials["nan"].number].note.startswith("NonFiniteLossError")
    csv = (tmp_path / "trials.csv").read_text()
    assert "boom in forward" in csv and "out of memory" in csv


# --- atomic results files ----------------------------------------------------------------------


def test_a_failed_rewrite_leaves_the_old_results_intact(tmp_path, monkeypatch):
    result = run_search(tiny("search.n_trials=2", "sampler=random"), run_dir=tmp_path)
    old = {p: (tmp_path / p).read_bytes() for p in ("pareto.json", "trials.csv")}
    storage = make_storage(None, run_dir=tmp_path)
    study = optuna.load_study(study_name=result.study.study_name, storage=storage)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    from nas._report.results import write_results

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_results(
            study,
            space=_space_of(study),
            num_classes=study.user_attrs["num_classes"],
            run_dir=tmp_path,
            plots=False,
        )
    monkeypatch.undo()
    for name, data in old.items():
        assert (tmp_path / name).read_bytes() == data
    json.loads((tmp_path / "pareto.json").read_text())
    assert not list(tmp_path.rglob("*.tmp"))


def _space_of(study: optuna.Study) -> nas.space.SearchSpace:
    attrs = study.user_attrs
    return nas.space.make_space(attrs["space"], **attrs["space_options"])


def test_readers_never_see_a_half_written_file(tmp_path):
    path = tmp_path / "pareto.json"
    docs = [json.dumps({"front": [{"trial": i, "pad": "x" * 200_000}]}) for i in range(2)]
    atomic_write_text(path, docs[0])
    stop = threading.Event()

    def rewrite() -> None:
        i = 0
        while not stop.is_set():
            atomic_write_text(path, docs[i % 2])
            i += 1

    writer = threading.Thread(target=rewrite)
    writer.start()
    reads: list[int] = []
    deadline = time.monotonic() + 30
    try:
        # At least 300 reads, and until both versions were read: a reader that never saw the
        # file change would prove nothing about reading during a rewrite.
        while len(reads) < 300 or set(reads) != {0, 1}:
            reads.append(json.loads(path.read_text())["front"][0]["trial"])
            if time.monotonic() > deadline:
                break
    finally:
        stop.set()
        writer.join()
    assert set(reads) == {0, 1}, "each read is one whole version, and both were read"


@pytest.mark.parametrize("recorded", [False, True])
def test_a_stale_trial_is_retried_with_its_network_only_once_it_is_known(tmp_path, recorded):
    # A worker on another machine stops beating (killed, preempted) while its trial samples its
    # network (one choice of two made) or after it recorded it: Optuna's retry keeps the
    # parameters, which must be all of the network or none.
    storage = make_storage(
        f"sqlite:///{tmp_path}/study.db", run_dir=tmp_path, heartbeat_interval=1, grace_period=1
    )
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    trial = study.ask()
    params = {"a": trial.suggest_int("a", 0, 9)}
    if recorded:
        params["b"] = trial.suggest_int("b", 0, 9)
        trial.set_user_attr("genotype", params)
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    failed, retry = study.get_trials()
    assert failed.state == TrialState.FAIL and retry.state == TrialState.WAITING
    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry)
    assert retried == failed.number
    assert retry.params == (params if recorded else {})
