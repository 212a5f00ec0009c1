"""The README's Slurm recipe on a real Slurm cluster: Hydra's submitit launcher, one PostgreSQL
study, faults through the scheduler (scancel, a time limit), resubmission.

The cluster tests need ``.ci/slurm.sh`` (munge, slurmdbd, slurmctld, two slurmd on this machine)
and the PostgreSQL server of ``.ci/run``; ``.ci/run`` starts both and exports
``NAS_TEST_SLURM_PARTITION``, ``SLURM_CONF`` and ``NAS_TEST_POSTGRES_URL``. Without them they are
skipped. The command is read from the README, so that what the README tells users to type is
what runs here; only the partition, resources and budget are adapted to the local cluster, and
a tiny space on synthetic data keeps each trial to about a second. The fault tests time each
network's latency for a fixed 1.5 or 3 s, so that a signal can be aimed at a running trial and
two jobs cannot finish before their time limit, on any machine.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from nas.__main__ import main
from nas._storage.recovery import budget_used, retried_numbers
from tests.test_distributed import (
    PG_STORAGE,
    POSTGRES_URL,
    ROOT,
    check_budget_exact,
    check_each_network_evaluated_once,
    cli_env,
    describe,
    pg_study_fixture,  # noqa: F401  (the pg_study fixture)
)

PARTITION = os.environ.get("NAS_TEST_SLURM_PARTITION")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: sacct states of a job that has ended.
ENDED = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED")


def _slurm_unavailable() -> str | None:
    if not PARTITION:
        why = os.environ.get("NAS_TEST_SLURM_UNAVAILABLE")  # .ci/run: why the cluster did not start
        return (
            f"no Slurm cluster: {why}"
            if why
            else "NAS_TEST_SLURM_PARTITION is not set (.ci/run starts a private Slurm cluster "
            "with .ci/slurm.sh and sets it; run that script by hand as root to start one)"
        )
    if not POSTGRES_URL:
        return "NAS_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)"
    missing = [cmd for cmd in ("sbatch", "squeue", "sacct", "scancel") if not shutil.which(cmd)]
    if missing:
        return f"Slurm's {', '.join(missing)} not on PATH"
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        return "hydra-submitit-launcher is not installed (pip install 'nas[slurm]')"
    return None


needs_slurm = pytest.mark.skipif(_slurm_unavailable() is not None, reason=str(_slurm_unavailable()))

#: Cheap trials: the README command's preset is replaced by conf=tiny (see adapted()).
CHEAP = ["sampler=random"]
#: Heartbeats fast enough for a test (the README's defaults are 10 s and 30 s).
FAST_HEARTBEATS = ["storage.heartbeat_interval=1", "storage.grace_period=3"]


def pinned(seconds: float) -> list[str]:
    """Trials that last at least ``seconds`` on any machine: latency is timed until then."""
    rounds = "100000"
    return [
        f"latency.min_rounds={rounds}",
        f"latency.max_rounds={rounds}",
        f"latency.max_seconds={seconds}",
    ]


# --- the README's command, adapted to the local cluster -----------------------------------------


def readme_command() -> list[str]:
    """The arguments of the multirun command in the README's "On a Slurm cluster" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### On a Slurm cluster", 1)[1].split("\n#", 1)[0]
    for block in section.split("```bash\n")[1:]:
        code = block.split("```", 1)[0].replace("\\\n", " ")
        for line in code.splitlines():
            words = shlex.split(line, comments=True)
            if words[:4] == ["python", "-m", "nas", "search"] and "-m" in words[4:]:
                return words[3:]
    raise AssertionError("no `python -m nas search -m` command in the README's Slurm section")


def adapted(
    *,
    study: str,
    n_trials: int,
    jobs: int,
    timeout_min: int = 10,
    signal_s: int = 120,
    extra: Sequence[str] = (),
) -> list[str]:
    """The README's command for the local cluster: CPU instead of GPU, this partition, one CPU
    per job, the given budget, job count and time limit, and cheap trials (conf=tiny)."""
    replace: dict[str, str | None] = {
        "conf": "tiny",
        "search.study_name": study,
        "search.n_trials": str(n_trials),
        "search.device": "cpu",
        "latency": "cpu",
        "hydra.launcher.partition": str(PARTITION),
        "hydra.launcher.gpus_per_node": None,
        "hydra.launcher.cpus_per_task": "1",
        "hydra.launcher.timeout_min": str(timeout_min),
        "hydra.launcher.array_parallelism": str(jobs),
        "+hydra.launcher.additional_parameters.signal": f"TERM@{signal_s}",
        "+worker": f"range(0,{jobs})",
    }
    args, seen = [], set()
    for arg in readme_command():
        key = arg.split("=", 1)[0]
        if key in replace:
            seen.add(key)
            if replace[key] is not None:
                args.append(f"{key}={replace[key]}")
        else:
            args.append(arg)
    assert seen == set(replace), f"the README's command lacks {sorted(set(replace) - seen)}"
    return [*args, *CHEAP, *extra]


def slurm_env() -> dict[str, str]:
    # The jobs inherit this environment (sbatch's --export=ALL): the README's NAS_DB_URL, and
    # the checkout under test ahead of any installed copy.
    return {**cli_env(), "NAS_DB_URL": str(POSTGRES_URL), "PYTHONPATH": str(ROOT)}


def start(args: Sequence[str], *, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "nas", *args],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=slurm_env(),
        )


def finish(proc: subprocess.Popen[bytes], log: Path, *, timeout: float = 300) -> str:
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log.read_text(errors="replace")


# --- what Slurm says -----------------------------------------------------------------------------


def arrays(run: Path) -> set[str]:
    """Ids of the job arrays submitit submitted for the sweep in ``run``."""
    folder = run / ".submitit"
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    return {name.split("_")[0] for name in names if name.split("_")[0].isdigit()}


def jobs_of(array: str) -> dict[str, dict[str, str]]:
    """sacct's view of an array's jobs: {"A_i": {"state", "node", "start", "end"}}."""
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", array, "-o", "JobID,State,NodeList,Start,End"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = {}
    for line in out.splitlines():
        job, state, node, started, ended = line.split("|")
        jobs[job] = {"state": state.split()[0], "node": node, "start": started, "end": ended}
    return jobs


def wait_until_ended(array: str, n_jobs: int, *, timeout: float = 240) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = jobs_of(array)
        if len(jobs) == n_jobs and all(j["state"] in ENDED for j in jobs.values()):
            return jobs
        time.sleep(1)
    pytest.fail(f"the jobs of array {array} did not end in {timeout} s: {jobs_of(array)}")


def running_jobs(array: str) -> dict[str, str]:
    """{"A_i": node} of the array's running jobs (squeue)."""
    out = subprocess.run(
        ["squeue", "-h", "-j", array, "-t", "RUNNING", "-o", "%i %N"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def job_of_pid(pid: int) -> str | None:
    """The Slurm job ("A_i") a process on this machine runs in, from its environment."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env = dict(
        item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
    )
    if "SLURM_ARRAY_JOB_ID" not in env:
        return None
    return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"


# --- the study -----------------------------------------------------------------------------------


def load(study: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=study, storage=PG_STORAGE).get_trials()


def retry_origins(t: FrozenTrial) -> tuple[Any, Any]:
    """The trial ``t`` retries: nas's own retry records "retry_of", Optuna's heartbeat retry
    "failed_trial"."""
    return t.user_attrs.get("retry_of"), RetryHeartbeatStaleTrialCallback.retried_trial_number(t)


def retry_of(trials: Sequence[FrozenTrial], number: int) -> FrozenTrial:
    """The trial that retries trial ``number``."""
    retries = [t for t in trials if number in retry_origins(t)]
    assert len(retries) == 1, f"trial {number} has {len(retries)} retries:\n{describe(trials)}"
    return retries[0]


def worker(t: FrozenTrial) -> tuple[str, int]:
    return t.user_attrs["worker"]["host"], t.user_attrs["worker"]["pid"]


def workers(trials: Sequence[FrozenTrial]) -> set[tuple[str, int]]:
    """The workers that took the trials (a queued trial has none yet)."""
    return {worker(t) for t in trials if "worker" in t.user_attrs}


def result_counts(run: Path) -> list[int]:
    """Trials in the results of each job that wrote some (multirun/STUDY/N/pareto.json)."""
    files = sorted(run.glob("[0-9]*/pareto.json"))
    return [json.loads(f.read_text())["n_trials"] for f in files]


def poll(predicate: Callable[[], Any], *, what: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except KeyError:  # the study does not exist yet
            value = None
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what}: not reached in {timeout} s")


# --- the launcher's one-line errors (no cluster needed) ------------------------------------------


def test_submitit_launcher_without_the_package_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hydra_plugins.hydra_submitit_launcher", None)
    code = main(["search", "-m", "hydra/launcher=submitit_slurm", "+worker=range(0,2)"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [
        "nas search: error: hydra/launcher=submitit_slurm needs the submitit launcher: "
        "pip install 'nas[slurm]'"
    ]


def test_submitit_slurm_without_sbatch_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no Slurm commands
    code = main(["search", "-m", "conf=mbconv_pareto", "hydra/launcher=submitit_slurm"])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("nas search: error: "), lines
    assert "sbatch and srun on PATH" in lines[0]


def test_submitit_slurm_with_the_controller_down_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    if not all(shutil.which(cmd) for cmd in ("sbatch", "srun", "scontrol")):
        pytest.skip("Slurm's client commands are not installed")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    conf = tmp_path / "slurm.conf"  # a controller on a port nothing listens on
    conf.write_text(
        "ClusterName=nowhere\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort=9\n"
        "NodeName=localhost CPUs=1\nPartitionName=p Nodes=ALL\n"
    )
    monkeypatch.setenv("SLURM_CONF", str(conf))
    code = main(["search", "-m", "hydra/launcher=submitit_slurm", "+worker=range(0,2)"])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2
    assert lines == [lines[0]] and "the Slurm controller does not answer" in lines[0], lines


# --- the recipe on the cluster -------------------------------------------------------------------


@pytest.mark.slow
@needs_slurm
def test_readme_command_runs_three_slurm_jobs_as_workers_of_one_study(tmp_path, pg_study):
    """Three jobs share one PostgreSQL study: the budget exactly, each network once, results
    written by every job and complete in the last one."""
    args = adapted(study=pg_study, n_trials=12, jobs=3)
    log = tmp_path / "multirun.log"
    out = finish(start(args, cwd=tmp_path, log=log), log)
    assert "Traceback" not in out, out[-3000:]

    run = tmp_path / "multirun" / pg_study
    (array,) = arrays(run)
    jobs = wait_until_ended(array, 3)
    assert {j["state"] for j in jobs.values()} == {"COMPLETED"}, jobs
    trials = load(pg_study)
    check_budget_exact(trials, 12)
    check_each_network_evaluated_once(trials)
    assert len(workers(trials)) == 3, f"every job takes trials:\n{describe(trials)}"
    assert {host for host, _ in workers(trials)} <= {j["node"] for j in jobs.values()}
    # Each job wrote what it saw when it stopped; the last to stop saw all of it.
    counts = result_counts(run)
    assert len(counts) == 3 and max(counts) == len(trials) == 12, counts


@pytest.mark.slow
@needs_slurm
def test_scancel_mid_trial_fails_the_trial_and_another_job_retries_it(tmp_path, pg_study):
    """Two faults in one run of three jobs, each while its worker evaluates a network:

    - a worker killed through the scheduler (SIGKILL to the job step, as when a node dies): no
      clean-up, so its trial is failed through the heartbeats (or, on the worker's own host,
      from its process id) and retried by another job;
    - a plain ``scancel`` (Slurm sends SIGTERM): the worker fails its trial and queues it again,
      and another job runs it.

    The study still ends with exactly its budget, each network evaluated once.
    """
    # Latency timed for 1.5 s: a trial caught within 0.8 s of its start is still being
    # evaluated when the signal lands; two kernels: 16,384 networks, so that hardly any trial is a
    # duplicate (a reused result ends at once).
    extra = [*FAST_HEARTBEATS, *pinned(1.5), "space.kernel=[3,5]"]
    args = adapted(study=pg_study, n_trials=12, jobs=3, extra=extra)
    log = tmp_path / "multirun.log"
    run = tmp_path / "multirun" / pg_study
    proc = start(args, cwd=tmp_path, log=log)
    try:
        array = poll(lambda: next(iter(arrays(run)), None), what="submission")
        poll(lambda: len(running_jobs(array)) == 3, what="three running jobs")

        def evaluating(*, exclude: set[str], alone: bool) -> tuple[FrozenTrial, str] | None:
            """A trial (not a retry) evaluating its network for 0.2 to 0.8 s (not a duplicate,
            which would have ended), and the job of its worker."""
            running = running_jobs(array)
            for t in load(pg_study):
                if t.state != TrialState.RUNNING or not t.user_attrs.get("genotype"):
                    continue
                age = datetime.now() - t.datetime_start
                if retry_origins(t) != (None, None) or not 0.2 < age.total_seconds() < 0.8:
                    continue
                job = job_of_pid(worker(t)[1])
                if job is None or job in exclude or job not in running:
                    continue
                if alone and list(running.values()).count(running[job]) > 1:
                    continue
                return t, job
            return None

        # Alone on its node (two nodes): only the heartbeats can tell the others it died.
        separate = len(set(running_jobs(array).values())) > 1
        killed, killed_job = poll(
            lambda: evaluating(exclude=set(), alone=separate), what="a trial being evaluated"
        )
        subprocess.run(["scancel", "--signal=KILL", f"{killed_job}.0"], check=True)
        poll(
            lambda: any(killed.number in retry_origins(t) for t in load(pg_study)),
            what=f"a retry of trial {killed.number}",
        )
        stopped, stopped_job = poll(
            lambda: evaluating(exclude={killed_job}, alone=False),
            what="a trial of another job being evaluated",
        )
        subprocess.run(["scancel", stopped_job], check=True)
        out = finish(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    jobs = wait_until_ended(array, 3)
    assert jobs[killed_job]["state"] == "FAILED", jobs
    assert jobs[stopped_job]["state"] == "CANCELLED", jobs
    (survivor,) = set(jobs) - {killed_job, stopped_job}
    assert jobs[survivor]["state"] == "COMPLETED", jobs
    # submitit reports the job that ended without a result; the other jobs were not waited for
    # in vain (the study below is complete).
    assert proc.returncode != 0 and killed_job in out, out[-3000:]

    trials = load(pg_study)
    by_number = {t.number: t for t in trials}
    killed, stopped = by_number[killed.number], by_number[stopped.number]
    assert killed.state == TrialState.FAIL and stopped.state == TrialState.FAIL, describe(trials)
    assert stopped.user_attrs.get("failure") == "interrupted (SIGTERM)", describe(trials)
    for failed in (killed, stopped):
        retry = retry_of(trials, failed.number)
        assert retry.params == failed.params and retry.state in FINISHED, describe(trials)
        assert worker(retry) != worker(failed), "another job's worker retries it"
    if separate:
        # Optuna's heartbeat retry records "failed_trial"; nas's own (same host) "retry_of".
        assert retry_of(trials, killed.number).system_attrs.get("failed_trial") == killed.number
    check_budget_exact(trials, 12)
    check_each_network_evaluated_once(trials)
    assert max(result_counts(run)) == len(trials)


@pytest.mark.slow
@needs_slurm
def test_time_limit_requeues_the_trial_and_resubmitting_finishes_the_study(tmp_path, pg_study):
    """Jobs with a one-minute limit: Slurm's SIGTERM before the limit (the README's
    ``signal=TERM@...``) stops each worker mid-trial; the trial is failed and queued again, the
    job writes its results and ends cleanly. Submitting the same command again adds workers to
    the same study, which run the queued trials first, until the budget is used.

    Each trial's latency is timed for 3 s of wall clock, so that two jobs cannot finish the
    budget before the first signal (20 to 50 s after the start: Slurm checks time limits every
    30 s), whatever the machine's speed.

    A signal can land while a trial still samples its network (21 choices written to
    PostgreSQL one by one; one run in two met one here): its retry samples a network afresh,
    since fixing the choices made so far would make it another network. Every trial stopped
    with its network sampled runs again with the same network.
    """
    args = adapted(study=pg_study, n_trials=36, jobs=2, timeout_min=1, signal_s=10, extra=pinned(3))
    run = tmp_path / "multirun" / pg_study
    seen: set[str] = set()
    added: list[set[tuple[str, int]]] = []  # the workers each submission added
    for attempt in range(5):
        before = workers(load(pg_study)) if attempt else set()
        log = tmp_path / f"multirun{attempt}.log"
        out = finish(start(args, cwd=tmp_path, log=log), log, timeout=240)
        assert "Traceback" not in out, out[-3000:]
        (array,) = arrays(run) - seen
        seen.add(array)
        jobs = wait_until_ended(array, 2)
        # Each job returned its result. (Not sacct's state: a SIGTERM that lands while Python
        # shuts down, once the job is done, kills it, and Slurm says FAILED.)
        results = [run / ".submitit" / job / f"{job}_0_result.pkl" for job in jobs]
        assert all(r.exists() for r in results), jobs
        trials = load(pg_study)
        assert not [t for t in trials if t.state == TrialState.RUNNING], describe(trials)
        added.append(workers(trials) - before)
        assert added[-1], f"submission {attempt} added no worker that took a trial"
        stopped = [t for t in trials if t.user_attrs.get("failure") == "interrupted (SIGTERM)"]
        for t in stopped:  # queued again, or already run again
            retry = retry_of(trials, t.number)
            if t.user_attrs.get("genotype"):  # the same network
                assert (retry.system_attrs.get("fixed_params") or retry.params) == t.params
            else:  # stopped while sampling: a fresh one
                assert retry.system_attrs.get("fixed_params") == {}
        if budget_used(trials) >= 36 and not [t for t in trials if t.state == TrialState.WAITING]:
            break
        assert {worker(t) for t in stopped} & added[-1], "the time limit stopped no trial"
    assert len(added) >= 2, "two jobs finished the budget before the time limit"

    # Exact: every trial counted in the budget finished, and every stopped one ran again.
    counted = [t for t in trials if t.number not in retried_numbers(trials)]
    assert budget_used(trials) == 36, describe(trials)
    assert [t.number for t in counted if t.state not in FINISHED] == [], describe(trials)
    check_each_network_evaluated_once(trials)
    for t in stopped:
        assert retry_of(trials, t.number).state in FINISHED, describe(trials)
    assert max(result_counts(run)) == len(trials)
