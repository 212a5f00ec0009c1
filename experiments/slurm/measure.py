"""The README's Slurm recipe on the local test cluster (``.ci/slurm.sh``): wall time with 1, 2
and 3 jobs, and the time from ``scancel`` to the retry of the cancelled job's trial.

Run from the repository root, with the cluster and the PostgreSQL server of ``.ci/run`` up::

    eval "$(bash .ci/slurm.sh env)"
    NAS_DB_URL=postgresql://nas:nas@127.0.0.1:54329/nas \\
        python experiments/slurm/measure.py all --out experiments/slurm/results

``scaling``: the same small study (24 trials, the tests' cheap trials: a tiny MBConv space,
160 synthetic images, 2 proxy epochs, brief latency timing) with 1, 2 and 3 jobs, the job
counts interleaved over the repetitions. ``scancel``: three jobs on a 120-trial study (40 with the tests' heartbeats); one job's
worker is killed (``scancel --signal=KILL JOB.0``, as when a node dies) while it evaluates a
network, then another job is cancelled (a plain ``scancel``: SIGTERM); the time from each to the
start of the trial's retry by another job, with the README's heartbeat settings (10 s, grace
30 s) and with the tests' (1 s, 3 s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

ROOT = Path(__file__).resolve().parents[2]
PARTITION = os.environ.get("NAS_TEST_SLURM_PARTITION", "ci")

#: The tests' cheap trials: conf=tiny (conf/conf/tiny.yaml, the README's conf=mbconv_pareto
#: shrunk) in command(), and random sampling.
CHEAP = ["sampler=random"]


def command(study: str, n_trials: int, jobs: int, extra: list[str]) -> list[str]:
    """The README's Slurm command with the local partition, CPU resources and cheap trials."""
    return [
        sys.executable,
        "-m",
        "nas",
        "search",
        "-m",
        "conf=tiny",
        "storage=postgres",
        "storage.url=${oc.env:NAS_DB_URL}",
        f"search.study_name={study}",
        f"search.n_trials={n_trials}",
        "search.device=cpu",
        "latency=cpu",
        "hydra/launcher=submitit_slurm",
        f"hydra.launcher.partition={PARTITION}",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
        "+hydra.launcher.additional_parameters.signal=TERM@120",
        f"hydra.launcher.array_parallelism={jobs}",
        f"+worker=range(0,{jobs})",
        *CHEAP,
        *extra,
    ]


def storage_url() -> str:
    url = os.environ.get("NAS_DB_URL") or os.environ.get("NAS_TEST_POSTGRES_URL")
    if not url:
        sys.exit("set NAS_DB_URL (the PostgreSQL server of .ci/run)")
    return url


def optuna_url() -> str:
    return storage_url().replace("postgresql://", "postgresql+psycopg2://", 1)


def env() -> dict[str, str]:
    return {
        **os.environ,
        "NAS_DB_URL": storage_url(),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }


def trials_of(study: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=study, storage=optuna_url()).get_trials()


def array_of(run: Path) -> str | None:
    folder = run / ".submitit"
    if not folder.is_dir():
        return None
    ids = {p.name.split("_")[0] for p in folder.iterdir() if p.name.split("_")[0].isdigit()}
    return ids.pop() if ids else None


def sacct(array: str) -> dict[str, dict[str, str]]:
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


def running_jobs(array: str) -> dict[str, str]:
    out = subprocess.run(
        ["squeue", "-h", "-j", array, "-t", "RUNNING", "-o", "%i %N"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def job_of_pid(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return None
    values = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    if "SLURM_ARRAY_JOB_ID" not in values:
        return None
    return f"{values['SLURM_ARRAY_JOB_ID']}_{values['SLURM_ARRAY_TASK_ID']}"


def wait_ended(array: str, n_jobs: int, timeout: float = 600) -> dict[str, dict[str, str]]:
    ended = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = sacct(array)
        if len(jobs) == n_jobs and all(j["state"] in ended for j in jobs.values()):
            return jobs
        time.sleep(1)
    raise RuntimeError(f"jobs of {array} did not end: {sacct(array)}")


def budget_check(trials: list[FrozenTrial], n_trials: int) -> dict[str, Any]:
    """Finished trials, failed ones and whether each failure was retried: none lost."""
    retried = {
        o
        for t in trials
        for o in (t.user_attrs.get("retry_of"), t.system_attrs.get("failed_trial"))
        if o is not None
    }
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    return {
        "finished": len(finished),
        "failed": len(failed),
        "failed_not_retried": [t.number for t in failed if t.number not in retried],
        "left_running_or_waiting": [
            t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)
        ],
        "exact": len(finished) == n_trials,
    }


def delete(study: str) -> None:
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=study, storage=optuna_url())


def scaling_run(jobs: int, n_trials: int, work: Path) -> dict[str, Any]:
    study = f"slurm_scaling_{jobs}_{uuid.uuid4().hex[:6]}"
    cwd = work / study
    cwd.mkdir(parents=True)
    args = command(study, n_trials, jobs, [])
    t0 = time.time()
    proc = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True)
    wall = time.time() - t0
    run = cwd / "multirun" / study
    array = array_of(run)
    assert proc.returncode == 0 and array, proc.stderr[-2000:]
    slurm_jobs = wait_ended(array, jobs)
    trials = trials_of(study)
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start]
    ends = [t.datetime_complete.timestamp() for t in trials if t.datetime_complete]
    per_job: dict[str, int] = {}
    for t in trials:
        key = f"{t.user_attrs['worker']['host']}:{t.user_attrs['worker']['pid']}"
        per_job[key] = per_job.get(key, 0) + 1
    first_job_start = min(
        datetime.fromisoformat(j["start"]).timestamp() for j in slurm_jobs.values()
    )
    row = {
        "jobs": jobs,
        "n_trials": n_trials,
        "wall_s": round(wall, 1),
        "submit_to_first_job_start_s": round(first_job_start - t0, 1),
        "submit_to_first_trial_s": round(min(starts) - t0, 1),
        "trial_span_s": round(max(ends) - min(starts), 1),
        "last_trial_to_command_end_s": round(t0 + wall - max(ends), 1),
        "trials_per_worker": sorted(per_job.values(), reverse=True),
        "job_states": sorted(j["state"] for j in slurm_jobs.values()),
        "nodes": sorted(j["node"] for j in slurm_jobs.values()),
        "budget": budget_check(trials, n_trials),
        "command": " ".join(args[1:]),
    }
    delete(study)
    return row


def just_started(
    study: str, array: str, *, exclude: set[str], alone: bool
) -> tuple[FrozenTrial, str] | None:
    running = running_jobs(array)
    for t in trials_of(study):
        if t.state != TrialState.RUNNING or "genotype" not in t.user_attrs:
            continue
        if t.user_attrs.get("retry_of") is not None or "failed_trial" in t.system_attrs:
            continue
        if (datetime.now() - t.datetime_start).total_seconds() > 0.3:
            continue
        job = job_of_pid(t.user_attrs["worker"]["pid"])
        if job is None or job in exclude or job not in running:
            continue
        if alone and list(running.values()).count(running[job]) > 1:
            continue
        return t, job
    return None


def poll(predicate: Any, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except KeyError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError("timed out")


def retry_start(study: str, number: int) -> tuple[float, float] | None:
    """(when trial ``number`` was marked failed, when its retry started), once both happened."""
    trials = trials_of(study)
    failed = next(t for t in trials if t.number == number)
    if failed.datetime_complete is None:
        return None
    for t in trials:
        retries = number in (t.user_attrs.get("retry_of"), t.system_attrs.get("failed_trial"))
        if retries and t.state != TrialState.WAITING and t.datetime_start:
            return failed.datetime_complete.timestamp(), t.datetime_start.timestamp()
    return None


def scancel_run(n_trials: int, heartbeat: tuple[int, int], work: Path) -> dict[str, Any]:
    study = f"slurm_scancel_{uuid.uuid4().hex[:6]}"
    cwd = work / study
    cwd.mkdir(parents=True)
    extra = [f"storage.heartbeat_interval={heartbeat[0]}", f"storage.grace_period={heartbeat[1]}"]
    args = command(study, n_trials, 3, extra)
    log = open(cwd / "multirun.log", "wb")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(args, cwd=cwd, env=env(), stdout=log, stderr=subprocess.STDOUT)
    run = cwd / "multirun" / study
    try:
        array = poll(lambda: array_of(run))
        poll(lambda: len(running_jobs(array)) == 3)
        separate = len(set(running_jobs(array).values())) > 1
        killed, killed_job = poll(lambda: just_started(study, array, exclude=set(), alone=separate))
        t_kill = time.time()
        subprocess.run(["scancel", "--signal=KILL", f"{killed_job}.0"], check=True)
        kill_failed, kill_retry = poll(lambda: retry_start(study, killed.number))
        stopped, stopped_job = poll(
            lambda: just_started(study, array, exclude={killed_job}, alone=False)
        )
        t_cancel = time.time()
        subprocess.run(["scancel", stopped_job], check=True)
        cancel_failed, cancel_retry = poll(lambda: retry_start(study, stopped.number))
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    jobs = wait_ended(array, 3)
    trials = trials_of(study)
    by_number = {t.number: t for t in trials}
    row = {
        "heartbeat_interval_s": heartbeat[0],
        "grace_period_s": heartbeat[1],
        "n_trials": n_trials,
        "kill_on_its_own_node": separate,
        "kill": {
            "trial": killed.number,
            "failure": by_number[killed.number].user_attrs.get("failure"),
            "retried_by": "heartbeats (Optuna)"
            if any(t.system_attrs.get("failed_trial") == killed.number for t in trials)
            else "process id (nas, same host)",
            "scancel_to_failed_s": round(kill_failed - t_kill, 2),
            "scancel_to_retry_start_s": round(kill_retry - t_kill, 2),
        },
        "scancel": {
            "trial": stopped.number,
            "failure": by_number[stopped.number].user_attrs.get("failure"),
            "scancel_to_failed_s": round(cancel_failed - t_cancel, 2),
            "scancel_to_retry_start_s": round(cancel_retry - t_cancel, 2),
        },
        "job_states": {job: j["state"] for job, j in sorted(jobs.items())},
        "command_exit": proc.returncode,
        "budget": budget_check(trials, n_trials),
        "command": " ".join(args[1:]),
    }
    delete(study)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("scaling", "scancel", "all"))
    parser.add_argument("--reps", type=int, default=2, help="repetitions of each setting")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments/slurm/results")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nas-slurm-measure"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    meta = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "sinfo": subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %c %m %T"], capture_output=True, text=True
        ).stdout.split("\n")[:-1],
    }
    if args.what in ("scaling", "all"):
        rows = []
        for rep in range(args.reps):
            for jobs in (1, 2, 3) if rep % 2 == 0 else (3, 2, 1):
                row = scaling_run(jobs, 24, args.work)
                print(json.dumps({k: v for k, v in row.items() if k != "command"}), flush=True)
                rows.append({"rep": rep, **row})
        meta["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        doc = {"meta": meta, "runs": rows}
        (args.out / "scaling.json").write_text(json.dumps(doc, indent=1) + "\n")
    if args.what in ("scancel", "all"):
        rows = []
        for rep in range(args.reps):
            # The survivors must still be running when the grace period ends.
            for heartbeat, n_trials in (((10, 30), 120), ((1, 3), 40)):
                row = scancel_run(n_trials, heartbeat, args.work)
                print(json.dumps({k: v for k, v in row.items() if k != "command"}), flush=True)
                rows.append({"rep": rep, **row})
        meta["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        doc = {"meta": meta, "runs": rows}
        (args.out / "scancel.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
