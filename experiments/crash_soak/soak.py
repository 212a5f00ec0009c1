"""Crash soak: a tiny search killed with SIGKILL at random moments, resumed each time.

The same command (``python -m nas search ...`` on the run directory's journal file, or on a
PostgreSQL study with ``--storage``) is started, killed after a random delay, and started again,
``--kills`` times; then it runs to completion. After every kill the study is read back with
plain Optuna and compared with what it held before: a finished trial (COMPLETE or PRUNED) that
disappears or changes is *lost*. At the end, every network evaluated by more than one finished
trial (not a recorded reuse of an earlier result) is *evaluated twice*. Trials a kill cut short
are failed and retried on the next start; they are counted, as the evaluation work a kill costs.

    python experiments/crash_soak/soak.py --kills 20 --out experiments/crash_soak/results

See README.md for the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

ROOT = Path(__file__).resolve().parents[2]
STUDY = "crash_soak"
#: The tests' preset (conf/conf/tiny.yaml): a trial takes about a second; random sampling
#: with two kernels: 16,384 networks, so that few trials are repeats (a reuse ends at once).
TINY = ["conf=tiny", "space.kernel=[3,5]", "sampler=random"]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def command(run: Path, trials: int, storage: str | None) -> list[str]:
    args = [sys.executable, "-m", "nas", "search", *TINY, f"search.study_name={STUDY}"]
    args += [f"search.n_trials={trials}", f"hydra.run.dir={run}"]
    if storage:
        args += ["storage=postgres", f"storage.url={storage}"]
    return args


def read_trials(run: Path, storage: str | None) -> list[FrozenTrial]:
    """The study's trials as plain Optuna reads them (a copy of the journal: nothing repaired)."""
    if storage:
        return optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    journal = run / "study.journal"
    if not journal.exists():
        return []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "study.journal"
        shutil.copyfile(journal, copy)
        try:
            study = optuna.load_study(
                study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(copy)))
            )
        except KeyError:  # killed before the study was created
            return []
        return study.get_trials()


def finished(trials: list[FrozenTrial]) -> dict[int, Any]:
    return {
        t.number: (t.state.name, t.values, t.user_attrs.get("accuracy"))
        for t in trials
        if t.state in FINISHED
    }


def _note(trial: FrozenTrial) -> str:
    """A failed trial's note with its numbers masked (process ids differ)."""
    return re.sub(r"\d+", "N", str(trial.user_attrs.get("failure")))


def run_once(args: list[str], log: Path, kill_after: float | None) -> tuple[int | None, float]:
    """Start the command; SIGKILL it after ``kill_after`` s (None: let it finish)."""
    start = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            start_new_session=True,
        )
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None, time.monotonic() - start
    return proc.returncode, time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--trials", type=int, default=150, help="the study's budget")
    parser.add_argument("--min-delay", type=float, default=2.0, help="seconds before a kill")
    parser.add_argument("--max-delay", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", default=None, help="a PostgreSQL URL (default: journal)")
    parser.add_argument("--out", type=Path, default=Path("experiments/crash_soak/results"))
    args = parser.parse_args()

    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    kind = "postgres" if args.storage else "journal"
    work = Path(tempfile.mkdtemp(prefix="crash_soak_"))
    run, log = work / "run", args.out / f"{kind}.log"
    log.unlink(missing_ok=True)
    if args.storage:
        with contextlib.suppress(KeyError):  # a fresh study
            optuna.delete_study(study_name=STUDY, storage=args.storage)
    cmd = command(run, args.trials, args.storage)
    seen: dict[int, Any] = {}
    lost: set[int] = set()
    kills: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for i in range(args.kills):
        delay = rng.uniform(args.min_delay, args.max_delay)
        code, _ = run_once(cmd, log, delay)
        trials = read_trials(run, args.storage)
        now = finished(trials)
        gone = {n for n, v in seen.items() if now.get(n) != v}
        lost |= gone
        seen.update(now)
        kills.append(
            {
                "kill": i,
                "delay_s": round(delay, 2),
                "killed": code is None,
                "exit": code,
                "finished": len(now),
                "trials": len(trials),
                "running_at_kill": sum(t.state == TrialState.RUNNING for t in trials),
                "lost": sorted(gone),
            }
        )
        print(f"kill {i}: after {delay:.1f} s, {len(now)} finished, lost {sorted(gone)}")
        if code is not None:  # the budget was used before the kill came
            break
    # To completion: run again until the command ends by itself with nothing left running.
    completions = 0
    while True:
        completions += 1
        code, _ = run_once(cmd, log, None)
        trials = read_trials(run, args.storage)
        if code != 0 or not any(t.state == TrialState.RUNNING for t in trials):
            break
        time.sleep(61)  # a trial killed before its worker was recorded counts as running for 60 s
    now = finished(trials)
    lost |= {n for n, v in seen.items() if now.get(n) != v}

    evaluated = [t for t in trials if t.state in FINISHED and "duplicate_of" not in t.user_attrs]
    keys = Counter(t.user_attrs.get("genotype_key") for t in evaluated)
    twice = {k: n for k, n in keys.items() if n > 1}
    failed = [t for t in trials if t.state == TrialState.FAIL]
    backups = sorted(p.name for p in run.glob("study.journal.torn-*"))
    summary = {
        "storage": kind,
        "command": " ".join(cmd[1:]),
        "kills": sum(k["killed"] for k in kills),
        "kills_mid_trial": sum(k["running_at_kill"] > 0 for k in kills),
        "budget": args.trials,
        "final_exit": code,
        "completion_runs": completions,
        "trials": len(trials),
        "finished": len(now),
        "finished_lost": sorted(lost),
        "networks_evaluated_twice": len(twice),
        "failed_by_kills": len(failed),
        "failure_notes": sorted(Counter(map(_note, failed)).items()),
        "torn_journal_backups": backups,
        "running_left": sum(t.state == TrialState.RUNNING for t in trials),
        "wall_s": round(time.monotonic() - t0, 1),
        "per_kill": kills,
    }
    (args.out / f"{kind}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "per_kill"}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if not lost and not twice and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
