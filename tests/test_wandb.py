"""The wandb logger against a real offline wandb run, read back from disk.

One module-scoped offline run (a wandb init costs about a second) is driven by a real in-memory
Optuna study whose trials carry the user attributes ``nas/_search.py`` records; the tests then
read the run directory back.

How the run is read back: wandb 0.31 (wandb-core) writes no ``wandb-summary.json`` or
``config.yaml`` for an offline run (they appear on ``wandb sync``) and no longer ships a Python
reader for its transaction log (``wandb.sdk.internal.datastore`` is gone). The log,
``run-ID.wandb``, is in LevelDB's log format: a 7-byte file header (``:W&B``, magic, version),
32 KiB blocks, each chunk prefixed by ``crc32(type + payload)``, length and type
(full/first/middle/last), and each assembled record is a ``wandb_internal_pb2.Record``
protobuf. ``_records`` reads it and checks every CRC, so a format change fails loudly instead
of passing on garbage. Tables are read from the JSON files the log points to
(``files/media/table/*.table.json``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

import nas
from nas import ConfigError
from nas._logging.wandb import TRIAL_TABLE_COLUMNS, WandbLogger
from nas._report.results import Results, write_results
from nas._trials.pareto import hypervolume_history

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

STUDY = "wb-test"
OPTIONS = {"name": "wandb", "project": "nas-test", "mode": "offline", "tags": ["test"], "dir": None}
#: (accuracy, latency_ms) of the evaluated trials; the front is trials 8, 0, 1, 3.
EVALUATED = {0: (0.50, 2.0), 1: (0.60, 3.0), 2: (0.55, 4.0), 3: (0.70, 5.0), 8: (0.40, 1.5)}


def _space() -> nas.space.SearchSpace:
    return nas.space.make_space("mbconv", resolution=32, width_mult=0.25, depth_mult=0.5)


def _trial(space: nas.space.SearchSpace, number: int) -> optuna.trial.FrozenTrial:
    """Trial ``number`` of the test study, with the user attributes the search records."""
    genotype = space.random_genotype(1 if number == 4 else number)  # 4 repeats trial 1
    attrs: dict[str, Any] = {
        "genotype": genotype,
        "genotype_key": space.identity(genotype),
        "arch": space.describe(genotype),
        "params": 10_000 + 1_000 * number,
        "macs": 200_000 + 10_000 * number,
        "constraints": [0.0, 0.0, 0.0],
        "seconds": {"total": 1.0 + number},
    }
    state, values = TrialState.COMPLETE, None
    if number in EVALUATED or number == 4:
        acc, lat = EVALUATED[1 if number == 4 else number]
        attrs.update(accuracy=acc, latency_ms=lat, curve=[acc / 2, acc])
        values = [acc, lat]
        if number == 4:
            attrs["duplicate_of"] = 1
    elif number == 5:
        attrs.update(constraints=[0.0, 0.5, 0.0], infeasible="params 15,000 > 10,000")
        attrs.update(accuracy=0.0, latency_ms=math.inf)
        values = [0.0, math.inf]
    elif number == 6:
        state = TrialState.FAIL
        attrs = {"genotype": genotype, "failure": "RuntimeError: out of memory"}
    else:
        state = TrialState.PRUNED
        attrs.update(accuracy=0.3, latency_ms=1.0, pruned="dominated at epoch 1")
    return optuna.trial.create_trial(
        state=state,
        values=values,
        params=genotype,
        distributions={k: CategoricalDistribution(v) for k, v in space.grid().items()},
        user_attrs=attrs,
    )


def _study() -> optuna.Study:
    return optuna.create_study(study_name=STUDY, directions=["maximize", "minimize"])


def _records(run: Path) -> Iterator[Any]:
    """The protobuf records of an offline run's transaction log (see the module docstring)."""
    (log,) = run.glob("run-*.wandb")
    data = log.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{log} does not start with the W&B header")
    block, pos, parts = 32 * 1024, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero padding up to the end of a block
            pos += left
            continue
        payload = data[pos + 7 : pos + 7 + length]
        if zlib.crc32(bytes([kind]) + payload) != crc:
            raise ValueError(f"{log}: bad CRC at byte {pos}")
        pos += 7 + length
        parts += payload
        if kind in (1, 4):  # FULL or LAST closes a record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def _items(record: Any, kind: str) -> dict[str, Any]:
    """A history, summary or config record as ``{"a/b": value}`` (nested keys joined)."""
    msg = getattr(record, kind)
    entries = msg.item if kind == "history" else msg.update
    return {
        "/".join(e.nested_key) if e.nested_key else e.key: json.loads(e.value_json) for e in entries
    }


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A study logged trial by trial into an offline run, its results logged, the run finished."""
    tmp = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as mp:
        # Keep wandb's caches, credentials and artifact staging inside the test's folder.
        for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
            mp.setenv(var, str(tmp / var.lower()))
        mp.setenv("WANDB_ERROR_REPORTING", "false")
        space, study, run_dir = _space(), _study(), tmp / "run"
        config = {"search": {"study_name": STUDY}, "report": {"hv_reference_latency_ms": None}}
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            logger = WandbLogger(OPTIONS, run_dir=run_dir, config=config, study_name=STUDY)
            active = logger.active
            for number in range(9):
                study.add_trial(_trial(space, number))
                logger.on_trial(study, study.trials[-1])
            results = write_results(study, space=space, num_classes=10, run_dir=run_dir)
            before = {name: path.read_bytes() for name, path in results.files.items()}
            logger.on_results(study, results)
            logger.finish()
            logger.finish()  # a second finish is a no-op
        # wandb-core closes the transaction log shortly after finish() returns; shutting the
        # service down, as the end of a search process does, waits for it.
        wandb.teardown()
        (run,) = (run_dir / "wandb").glob("offline-run-*")
        yield {
            "logger": logger,
            "active": active,
            "study": study,
            "results": results,
            "before": before,
            "run": run,
            "records": list(_records(run)),
            "stderr": stderr.getvalue(),
        }


@pytest.fixture(scope="module", autouse=True)
def _no_wandb_process_left() -> Iterator[None]:
    """After this module, wandb's service is shut down and no wandb process is left."""
    yield
    wandb.teardown()
    assert not _wandb_children(), "a wandb process outlived the tests"


def _wandb_children() -> list[str]:
    """Command lines of this process's children that are wandb's service."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and "wandb" in cmd:
            found.append(cmd)
    return found


def _history(logged: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _items(r, "history") for r in logged["records"] if r.WhichOneof("record_type") == "history"
    ]


def _table(logged: dict[str, Any], key: str) -> dict[str, Any]:
    """The table logged under ``key``, from the JSON file the history points to."""
    rows = [h for h in _history(logged) if f"{key}/path" in h]
    assert len(rows) == 1, f"{key} logged {len(rows)} times"
    assert rows[0][f"{key}/_type"] == "table-file"
    return json.loads((logged["run"] / "files" / rows[0][f"{key}/path"]).read_text())


def _visualize(logged: dict[str, Any], key: str) -> dict[str, Any]:
    """A custom chart's spec, which wandb keeps in the run config under ``_wandb.visualize``."""
    found = [
        value
        for r in logged["records"]
        if r.WhichOneof("record_type") == "config"
        for name, value in _items(r, "config").items()
        if name == f"_wandb/visualize/{key}"
    ]
    assert len(found) == 1, f"chart {key} logged {len(found)} times"
    return found[0]


def test_run_is_offline_named_after_the_study_with_config_and_tags(logged: dict[str, Any]) -> None:
    assert logged["active"]
    (run,) = [r.run for r in logged["records"] if r.WhichOneof("record_type") == "run"]
    assert run.display_name == STUDY
    assert run.project == "nas-test"
    assert list(run.tags) == ["test"]
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["search"] == {"study_name": STUDY}
    assert logged["run"].name.startswith("offline-run-")


def test_all_trials_table_has_pareto_flag_and_genotype(logged: dict[str, Any]) -> None:
    results: Results = logged["results"]
    table = _table(logged, "trials_table")
    assert table["columns"] == list(TRIAL_TABLE_COLUMNS)
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert [r["trial"] for r in rows] == list(range(9))
    assert {r["trial"] for r in rows if r["pareto"]} == {8, 0, 1, 3}
    assert {r.trial for r in results.front} == {8, 0, 1, 3}
    by_trial = {r["trial"]: r for r in rows}
    assert by_trial[5]["feasible"] is False and by_trial[5]["latency_ms"] is None
    assert by_trial[6]["state"] == "FAIL" and "out of memory" in by_trial[6]["note"]
    assert by_trial[7]["state"] == "PRUNED"
    assert by_trial[4]["duplicate_of"] == 1
    for r in results.rows:
        assert json.loads(by_trial[r.trial]["genotype"]) == r.genotype
        if r.evaluated:
            assert (by_trial[r.trial]["accuracy"], by_trial[r.trial]["latency_ms"]) == (
                r.accuracy,
                r.latency_ms,
            )


def test_pareto_scatter_plot_is_drawn_over_the_trials_table(logged: dict[str, Any]) -> None:
    chart = _visualize(logged, "pareto_scatter")
    config = chart["panel_config"]
    assert config["panelDefId"] == "wandb/scatter/v0"
    assert config["fieldSettings"] == {"x": "latency_ms", "y": "accuracy"}
    assert STUDY in config["stringSettings"]["title"]
    query = json.dumps(config["userQuery"])
    assert '"pareto_scatter_table"' in query
    assert _table(logged, "pareto_scatter_table") == _table(logged, "trials_table")


def test_front_table_and_hypervolume_curve(logged: dict[str, Any]) -> None:
    results: Results = logged["results"]
    front = _table(logged, "pareto_front")
    rows = [dict(zip(front["columns"], row, strict=True)) for row in front["data"]]
    assert [r["trial"] for r in rows] == [8, 0, 1, 3]  # by latency
    assert all(r["arch_file"] == f"archs/trial_{r['trial']}.yaml" for r in rows)
    chart = _visualize(logged, "hypervolume_curve")["panel_config"]
    assert chart["panelDefId"] == "wandb/line/v0"
    assert chart["fieldSettings"]["x"] == "trial" and chart["fieldSettings"]["y"] == "hypervolume"
    curve = _table(logged, "hypervolume_curve_table")["data"]
    expected = hypervolume_history(results.rows, results.reference_latency_ms)
    # pytest >= 9.2 refuses approx() of nested structures: compare trials, then values.
    assert [trial for trial, _ in curve] == [trial for trial, _ in expected]
    assert [hv for _, hv in curve] == pytest.approx([hv for _, hv in expected])


def test_per_trial_metrics_against_the_trial_number(logged: dict[str, Any]) -> None:
    results: Results = logged["results"]
    per_trial = [h for h in _history(logged) if "trial" in h]
    assert [h["trial"] for h in per_trial] == list(range(9))
    for h, row in zip(per_trial, results.rows, strict=True):
        assert h["state"] == row.state
        assert h["feasible"] == row.feasible
        for name in ("accuracy", "params", "macs"):  # None (failed trial): not logged
            assert h.get(name) == getattr(row, name)
        assert h.get("seconds") == row.total_seconds
        assert {k.removeprefix("genotype/") for k in h if k.startswith("genotype/")} == set(
            row.genotype or logged["study"].trials[row.trial].params
        )
    assert per_trial[0]["accuracy"] == 0.5 and per_trial[0]["latency_ms"] == 2.0
    assert "latency_ms" not in per_trial[5]  # infinite latency of the infeasible trial: not logged
    hv = [h["hypervolume"] for h in per_trial]
    assert hv == sorted(hv) and hv[0] > 0
    assert hv[-1] == pytest.approx(results.hypervolume)
    assert [h["front_size"] for h in per_trial][-1] == 4
    # The x-axis is the trial number, declared once.
    metrics = {
        r.metric.name or r.metric.glob_name: r.metric.step_metric
        for r in logged["records"]
        if r.WhichOneof("record_type") == "metric"
    }
    assert metrics["accuracy"] == "trial" and metrics["genotype/*"] == "trial"


def test_summary_image_and_architecture_artifact(logged: dict[str, Any]) -> None:
    results: Results = logged["results"]
    summary: dict[str, Any] = {}
    for r in logged["records"]:
        if r.WhichOneof("record_type") == "summary":
            summary.update(_items(r, "summary"))
    assert summary["hypervolume"] == pytest.approx(results.hypervolume)
    assert summary["front_size"] == 4
    image = [h for h in _history(logged) if "pareto_plot/path" in h]
    assert len(image) == 1 and (logged["run"] / "files" / image[0]["pareto_plot/path"]).is_file()
    artifacts = [
        r.artifact
        for r in logged["records"]
        if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "architectures"
    ]
    assert len(artifacts) == 1
    assert artifacts[0].name == f"{STUDY}-architectures"
    contents = {c.path for c in artifacts[0].manifest.contents}
    assert contents == {"pareto.json", *(f"archs/trial_{n}.yaml" for n in (0, 1, 3, 8))}


def test_offline_hint_once_no_warning_and_results_untouched(logged: dict[str, Any]) -> None:
    lines = logged["stderr"].splitlines()
    assert [line for line in lines if "wandb sync" in line] == [
        f"wandb: offline run saved; upload it with `wandb sync {logged['run']}`"
    ]
    assert not [line for line in lines if "wandb logging stopped" in line]
    results: Results = logged["results"]
    assert {n: p.read_bytes() for n, p in results.files.items()} == logged["before"]
    assert not logged["logger"].active
    exits = [r.exit for r in logged["records"] if r.WhichOneof("record_type") == "exit"]
    assert [e.exit_code for e in exits] == [0]


def _search(logger: WandbLogger, run_dir: Path) -> tuple[optuna.Study, Results]:
    """A short real Optuna search with the logger as callback, then its results."""
    space = _space()

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        genotype = space.sample(trial)
        acc, lat = 0.1 + 0.1 * trial.number, 1.0 + trial.number
        trial.set_user_attr("genotype", genotype)
        for k, v in {"accuracy": acc, "latency_ms": lat, "params": 1, "macs": 1}.items():
            trial.set_user_attr(k, v)
        return acc, lat

    study = _study()
    study.optimize(objective, n_trials=3, callbacks=[logger.on_trial])
    results = write_results(study, space=space, num_classes=10, run_dir=run_dir, plots=False)
    logger.on_results(study, results)
    logger.finish()
    return study, results


def test_init_failure_warns_once_and_the_search_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_init(**kwargs: Any) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(wandb, "init", broken_init)
    logger = WandbLogger(OPTIONS, run_dir=tmp_path, config={}, study_name=STUDY)
    assert not logger.active
    study, results = _search(logger, tmp_path)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "nas: wandb logging stopped (init: OSError: No space left on device); "
        "the search goes on without it"
    ]
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert [r.trial for r in results.front] == [0, 1, 2]
    assert not (tmp_path / "wandb").exists()


def test_missing_wandb_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # what `import wandb` sees when not installed
    logger = WandbLogger(OPTIONS, run_dir=tmp_path, config={}, study_name=STUDY)
    study, _ = _search(logger, tmp_path)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("nas: wandb logging stopped (init: ModuleNotFoundError: ")
    assert len(study.trials) == 3


def test_failure_mid_run_warns_once_then_goes_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    logger = WandbLogger(OPTIONS, run_dir=tmp_path, config={}, study_name=STUDY)
    assert logger.active
    calls = []

    def full_disk(data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        calls.append(data)
        raise OSError("No space left on device")

    monkeypatch.setattr(logger._run, "log", full_disk)
    study, results = _search(logger, tmp_path)
    assert len(calls) == 1  # quiet after the first failure
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert err == [
        "nas: wandb logging stopped (on_trial: OSError: No space left on device); "
        "the search goes on without it"
    ]
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert len(results.front) == 3
    # The run was closed as failed, so wandb holds nothing open.
    wandb.teardown()  # see the logged fixture
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    exits = [r.exit.exit_code for r in _records(run) if r.WhichOneof("record_type") == "exit"]
    assert exits == [1]


def test_online_without_credentials_fails_fast_without_prompting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    # A prompt would read stdin; make any read fail loudly instead of hanging.
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    logger = WandbLogger(
        {**OPTIONS, "mode": "online"}, run_dir=tmp_path, config={}, study_name=STUDY
    )
    assert not logger.active
    err = capsys.readouterr().err
    assert err.count("wandb logging stopped") == 1
    assert "no W&B credentials" in err and "wandb login" in err
    _search(logger, tmp_path)
    assert "wandb logging stopped" not in capsys.readouterr().err


def test_disabled_mode_logs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logger = WandbLogger(
        {**OPTIONS, "mode": "disabled"}, run_dir=tmp_path, config={}, study_name=STUDY
    )
    assert not logger.active
    study, _ = _search(logger, tmp_path)
    assert len(study.trials) == 3
    assert not (tmp_path / "wandb").exists()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "offine"}, "logger.mode must be one of ['offline', 'online', 'disabled']"),
        ({"tags": "a,b"}, "logger.tags must be a list of strings"),
        ({"projet": "x"}, "logger.projet is not a wandb logger option"),
    ],
)
def test_bad_options_raise_naming_the_key(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        WandbLogger({**OPTIONS, **options}, run_dir=tmp_path, config={}, study_name=STUDY)


@pytest.mark.slow
def test_online_with_unreachable_server_warns_once(tmp_path: Path) -> None:
    """A real online init against a closed port fails once; the study runs on.

    In a subprocess: wandb reads its environment once per process, and this test needs its own.
    """
    script = textwrap.dedent(
        f"""
        import optuna
        from pathlib import Path
        from nas._logging.wandb import WandbLogger

        logger = WandbLogger(
            {{"mode": "online", "project": "p"}}, run_dir=Path({str(tmp_path)!r}), config={{}},
            study_name="s",
        )
        study = optuna.create_study()
        study.optimize(
            lambda t: t.suggest_float("x", 0, 1), n_trials=3, callbacks=[logger.on_trial]
        )
        logger.finish()
        print(len(study.trials), logger.active)
        """
    )
    env = {
        **os.environ,
        "WANDB_BASE_URL": "http://127.0.0.1:9",  # the discard port: connection refused
        "WANDB_API_KEY": "a" * 40,
        "WANDB_INIT_TIMEOUT": "2",
        "WANDB_CONFIG_DIR": str(tmp_path / "config"),
        "WANDB_DATA_DIR": str(tmp_path / "data"),
        "WANDB_CACHE_DIR": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "False"]
    warnings = [line for line in done.stderr.splitlines() if "wandb logging stopped" in line]
    assert len(warnings) == 1 and warnings[0].startswith("nas: wandb logging stopped (init: ")
