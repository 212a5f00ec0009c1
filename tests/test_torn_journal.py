"""A torn journal is never appended to: a last record cut short is dropped (the original kept
beside it) and the study resumes with every complete trial; damage before the last record is
refused with the file unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from nas import ConfigError, run_search
from nas._storage.journal import JournalFile
from tests.test_distributed import check_budget_exact
from tests.test_search import tiny

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 3
CREATE_TRIAL, SET_TRIAL_PARAM, SET_TRIAL_STATE_VALUES, SET_TRIAL_USER_ATTR = 4, 5, 6, 8


def config():
    return tiny(f"search.n_trials={BUDGET}", "sampler=random")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The journal of a finished tiny search, run in another process (whose workers are gone
    when the tests resume it, as after a crash)."""
    run = tmp_path_factory.mktemp("finished")
    code = (
        "from nas import run_search; from tests.test_search import tiny; "
        f"run_search(tiny('search.n_trials={BUDGET}', 'sampler=random'), run_dir={str(run)!r})"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
    return (run / "study.journal").read_bytes()


def records(journal: bytes) -> list[tuple[int, int, dict]]:
    """(start, end) byte offsets of each record's line (newline excluded), and the record."""
    out, pos = [], 0
    for line in journal.split(b"\n")[:-1]:
        out.append((pos, pos + len(line), json.loads(line)))
        pos += len(line) + 1
    return out


def cut_offsets(journal: bytes) -> dict[str, int]:
    """Ten places to cut the journal, within the records of its last two trials."""
    recs = records(journal)
    creates = [i for i, (_, _, r) in enumerate(recs) if r["op_code"] == CREATE_TRIAL]
    last, before = creates[-1], creates[-2]

    def index(op: int, after: int, key: str | None = None) -> int:
        return next(
            i
            for i in range(after, len(recs))
            if recs[i][2]["op_code"] == op
            and (key is None or key in recs[i][2].get("user_attr", {}))
        )

    def middle(i: int) -> int:
        start, end, _ = recs[i]
        return (start + end) // 2

    tell = index(SET_TRIAL_STATE_VALUES, last)
    return {
        "40 bytes into the last record": recs[-1][0] + 40,
        "in the middle of the last trial's tell": middle(tell),
        "the last record whole, without its newline": recs[-1][1],
        "a line boundary in the running trial": recs[tell - 2][1] + 1,
        "in the running trial's accuracy": middle(index(SET_TRIAL_USER_ATTR, last, "accuracy")),
        "in the running trial's genotype": middle(index(SET_TRIAL_USER_ATTR, last, "genotype")),
        "in the running trial's first choice": middle(index(SET_TRIAL_PARAM, last)),
        "in the running trial's worker": middle(index(SET_TRIAL_USER_ATTR, last, "worker")),
        "10 bytes into the trial's creation": recs[last][0] + 10,
        "in the tell of the trial before": middle(index(SET_TRIAL_STATE_VALUES, before)),
    }


def finished_trials(path: Path) -> dict[int, tuple[TrialState, list[float] | None]]:
    """The finished trials Optuna reads from a journal (it skips a last line cut short)."""
    copy = path.with_name("reading.journal")
    shutil.copyfile(path, copy)
    try:
        study = optuna.load_study(
            study_name="mbconv_pareto", storage=JournalStorage(JournalFileBackend(str(copy)))
        )
        done = (TrialState.COMPLETE, TrialState.PRUNED)
        return {t.number: (t.state, t.values) for t in study.get_trials() if t.state in done}
    finally:
        copy.unlink()


@pytest.mark.slow
def test_a_journal_cut_at_ten_offsets_resumes_every_time_with_no_complete_trial_lost(
    tmp_path, finished, monkeypatch, capsys
):
    # A trial cut before its worker was recorded counts as running for a minute after its
    # start; the resume here comes sooner than a user's would.
    monkeypatch.setattr("nas._storage.recovery.UNCLAIMED_AFTER_S", 0.0)
    offsets = cut_offsets(finished)
    assert len(set(offsets.values())) == 10
    for i, (where, offset) in enumerate(offsets.items()):
        run = tmp_path / f"cut{i}"
        run.mkdir()
        journal = run / "study.journal"
        journal.write_bytes(finished[:offset])
        complete = finished_trials(journal)
        capsys.readouterr()

        result = run_search(config(), run_dir=run)

        lines = [line for line in capsys.readouterr().err.splitlines() if "journal file" in line]
        backups = list(run.glob("study.journal.torn-*"))
        if finished[offset - 1 : offset] == b"\n":  # a clean cut: nothing to repair
            assert lines == [] and backups == [], where
        else:
            assert len(lines) == 1 and len(backups) == 1, (where, lines)
            assert backups[0].read_bytes() == finished[:offset], where
            assert str(backups[0]) in lines[0], where
            if where.startswith("the last record whole"):
                assert "completed it" in lines[0]
            else:
                torn = offset - finished.rindex(b"\n", 0, offset) - 1
                assert f"dropped its {torn} bytes" in lines[0], (where, lines[0])
        # Optuna reads the study back; every trial complete before the cut is unchanged.
        study = optuna.load_study(
            study_name="mbconv_pareto", storage=JournalStorage(JournalFileBackend(str(journal)))
        )
        trials = study.get_trials()
        after = {t.number: (t.state, t.values) for t in trials}
        assert {n: after[n] for n in complete} == complete, where
        check_budget_exact(trials, BUDGET)
        assert len(result.study.get_trials()) == len(trials)
        # Nothing was joined to a torn line: every line is a whole record.
        for line in journal.read_bytes().split(b"\n")[:-1]:
            json.loads(line)


def test_the_issues_cut_40_bytes_into_the_last_record_resumes(tmp_path, finished, capsys):
    """The issue's case: cut 40 bytes into the last record (the last trial's tell), run again:
    one line says what was dropped and where the original is; the cut trial runs again."""
    journal = tmp_path / "study.journal"
    offset = records(finished)[-1][0] + 40
    journal.write_bytes(finished[:offset])
    run_search(config(), run_dir=tmp_path)
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "journal file" in x]
    assert line.startswith(f"nas: journal file {journal}: its last record was torn")
    assert "dropped its 40 bytes" in line and "study.journal.torn-" in line
    trials = optuna.load_study(
        study_name="mbconv_pareto", storage=JournalStorage(JournalFileBackend(str(journal)))
    ).get_trials()
    check_budget_exact(trials, BUDGET)


def _damage_a_middle_line(journal: bytes) -> bytes:
    recs = records(journal)
    start, end, _ = recs[len(recs) // 2]
    return journal[: (start + end) // 2] + journal[end:]  # half a record, then the rest


@pytest.mark.parametrize("tail", ["whole", "torn"])
def test_damage_before_the_last_record_is_refused_with_the_file_unchanged(tmp_path, finished, tail):
    damaged = _damage_a_middle_line(finished)
    if tail == "torn":
        damaged = damaged[:-30]
    journal = tmp_path / "study.journal"
    journal.write_bytes(damaged)
    number = len(records(finished)) // 2 + 1
    with pytest.raises(ConfigError, match=rf"is damaged at line {number} of \d+, before its last"):
        run_search(config(), run_dir=tmp_path)
    assert journal.read_bytes() == damaged
    assert not list(tmp_path.glob("study.journal.torn-*"))


def test_a_torn_record_left_by_another_writer_is_dropped_before_the_next_write(tmp_path, capsys):
    """A writer that died inside its write (Optuna breaks its lock after a grace period): the
    next write does not join the torn bytes."""
    path = tmp_path / "study.journal"
    backend = JournalFile(str(path))
    storage = JournalStorage(backend)
    study = optuna.create_study(study_name="s", storage=storage)
    study.tell(study.ask(), 1.0)
    whole = path.read_bytes()
    torn = b'{"op_code":4,"worker_id":"dead","study_id":0,"datetime_st'
    with open(path, "ab") as fh:
        fh.write(torn)
    study.tell(study.ask(), 2.0)
    assert f"dropped its {len(torn)} bytes" in capsys.readouterr().err
    text = path.read_bytes()
    assert text.startswith(whole)
    for line in text.split(b"\n")[:-1]:
        json.loads(line)
    again = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    assert [t.values for t in again.get_trials()] == [[1.0], [2.0]]


def test_a_write_cut_short_by_a_full_disk_is_taken_back(tmp_path):
    """A file size limit stands in for a full disk: the write fails part-way through."""
    path = tmp_path / "study.journal"
    JournalFile(str(path)).append_logs([{"op_code": 0, "study_name": "s", "directions": [1]}])
    size = path.stat().st_size
    code = f"""
import resource, signal
from nas._storage.journal import JournalFile
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({size + 100}, {size + 100}))
try:
    JournalFile({str(path)!r}).append_logs([{{"op_code": 2, "study_id": 0,
                                                "user_attr": {{"x": "y" * 1000}}}}])
except OSError as err:
    print("failed", err.errno)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("failed"), out.stdout + out.stderr
    assert path.stat().st_size == size  # no torn record left for the next write to join


def test_a_writer_killed_holding_the_lock_does_not_hold_up_the_next_one(tmp_path):
    """Optuna's own lock, left by a killed holder, made every resume wait 30 s (and a resume
    killed within them never got through)."""
    path = tmp_path / "study.journal"
    JournalFile(str(path)).append_logs([{"op_code": 0, "study_name": "s", "directions": [1]}])
    code = f"""
import sys, time
from nas._storage.journal import JournalFile
JournalFile({str(path)!r})._lock.acquire()
print("held", flush=True)
time.sleep(600)
"""
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
    finally:
        holder.kill()
        holder.wait()
    assert Path(f"{path}.lock").is_symlink(), "the killed holder's lock is left"
    start = time.monotonic()
    JournalFile(str(path)).append_logs([{"op_code": 2, "study_id": 0, "user_attr": {"x": 1}}])
    assert time.monotonic() - start < 5
    assert len(path.read_text().splitlines()) == 2
    assert not Path(f"{path}.lock").exists(), "released"
