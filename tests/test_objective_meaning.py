"""The first objective keeps its meaning: a training-free score is called a score everywhere.

A study of the ``ensemble`` evaluator (a score, any real number) and one of the proxy (an
accuracy in [0, 1]) are run for real, tiny; every output is read back: the front table, ``nas
show``, pareto.json, trials.csv, the architecture files, the plots, Optuna's metric names, the
progress bar and an offline wandb run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from rich.console import Console

from nas import run_search
from nas._report import plots
from nas._report.show import show_run
from nas._report.tables import front_table
from nas._search.progress import Progress
from nas._search.run import SearchResult
from nas._search.study import metric_names
from nas._storage.storage import make_storage
from nas._trials.metric import FirstObjective, first_objective
from tests.test_search import tiny

ENSEMBLE = (
    "evaluator=ensemble",
    "~evaluator.epochs",  # the tiny preset's proxy option
    "evaluator.reference=4",
    "evaluator.batch_size=16",
    "search.n_trials=3",
    "sampler=random",
)
SCORE = {"key": "score", "name": "ensemble_score", "label": "ensemble score"}


def _text(table: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(table)
    return out.getvalue()


def _header(text: str) -> str:
    return next(line for line in text.splitlines() if "┃ trial" in line)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A tiny ensemble study, with plots and an offline wandb run; the plots' y labels."""
    run_dir = tmp_path_factory.mktemp("ensemble")
    labels: dict[str, str] = {}
    save = plots.save_figure

    def saving(fig: Any, path: Path) -> None:
        labels[Path(path).name] = fig.axes[0].get_ylabel()
        save(fig, path)

    with pytest.MonkeyPatch.context() as mp:
        for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
            mp.setenv(var, str(run_dir / var.lower()))
        mp.setenv("WANDB_ERROR_REPORTING", "false")
        mp.setattr(plots, "save_figure", saving)
        result = run_search(
            tiny(*ENSEMBLE, "report.plots=true", "logger=wandb", "logger.project=nas-test"),
            run_dir=run_dir,
        )
    wandb = pytest.importorskip("wandb")
    wandb.teardown()  # completes the offline run's transaction log
    yield {"result": result, "run_dir": run_dir, "labels": labels}


def test_the_evaluators_say_what_the_first_objective_is() -> None:
    assert first_objective(["proxy", None]) == FirstObjective()
    assert first_objective([]).label == "proxy accuracy (%)"
    assert first_objective(["table"]).label == "accuracy (%)"
    score = first_objective(["score:naswot"])
    assert (score.key, score.name, score.label, score.percent) == (
        "score",
        "naswot_score",
        "naswot score",
        False,
    )
    assert first_objective(["synflow"]).name == "synflow_score"
    # Mixed (a protocol change allowed on resume): a score, named by the first score.
    assert first_objective(["proxy", "jacob_cov", "ensemble"]).name == "jacob_cov_score"
    assert score.show(-1234.5678) == "-1235" and score.scaled(0.5) == 0.5
    assert FirstObjective().show(0.731) == "73.10" and FirstObjective().scaled(0.5) == 50


def test_a_score_study_prints_a_score_column(scored: dict[str, Any]) -> None:
    result: SearchResult = scored["result"]
    front = result.results.front
    assert front and result.results.objective == FirstObjective(**SCORE)
    text = _text(front_table(front))
    header = _header(text)
    assert "ensemble score" in header and "accuracy" not in header
    for r in front:
        assert f"{r.accuracy:.4g}" in text  # the score as it is, not x100


def test_nas_show_names_the_score(scored: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    run_dir: Path = scored["run_dir"]
    show_run(run_dir)  # from pareto.json
    out = capsys.readouterr().out
    assert "ensemble score" in out and "accuracy" not in out
    pareto = run_dir / "pareto.json"
    doc = pareto.read_text()
    try:
        pareto.unlink()
        show_run(run_dir)  # from the study's storage
    finally:
        pareto.write_text(doc)
    out = capsys.readouterr().out
    assert "ensemble score" in out and "accuracy" not in out


def test_pareto_json_says_score(scored: dict[str, Any]) -> None:
    doc = json.loads((scored["run_dir"] / "pareto.json").read_text())
    assert doc["first_objective"] == SCORE
    assert doc["objectives"] == {"score": "maximize", "latency_ms": "minimize"}
    assert set(doc["reference_point"]) == {"score", "latency_ms"}
    # The front's records keep the key readers of earlier files use.
    assert doc["front"] and all(isinstance(r["accuracy"], float) for r in doc["front"])


def test_trials_csv_says_score_and_keeps_its_columns(scored: dict[str, Any]) -> None:
    text = (scored["run_dir"] / "trials.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    header = text.splitlines()[0].split(",")
    # no column moved: later ones (screen, budget) only added after it
    assert header[2] == "accuracy" and header[16:] == ["objective", "screen", "budget"]
    assert len(rows) == 3 and {r["objective"] for r in rows} == {"ensemble_score"}


def test_architecture_files_name_the_score(scored: dict[str, Any]) -> None:
    run_dir: Path = scored["run_dir"]
    for r in json.loads((run_dir / "pareto.json").read_text())["front"]:
        metrics = yaml.safe_load((run_dir / r["arch_file"]).read_text())["metrics"]
        assert metrics["ensemble_score"] == r["accuracy"] and "accuracy" not in metrics


def test_plots_label_the_score(scored: dict[str, Any]) -> None:
    labels = scored["labels"]
    assert labels["pareto.png"] == "ensemble score"
    assert labels["hypervolume.png"] == "hypervolume (score x ms)"
    html = (scored["run_dir"] / "pareto.html").read_text()
    assert '"title":{"text":"ensemble score"}' in html and "proxy accuracy" not in html
    front = scored["result"].results.front
    assert f"ensemble score {front[0].accuracy:.4g}" in html  # hover text, not a percentage


def test_optuna_metric_names_say_score(scored: dict[str, Any]) -> None:
    study: optuna.Study = scored["result"].study
    assert study.metric_names == ["ensemble_score", "latency_ms"]
    assert metric_names("pareto", {"name": "score", "score": "naswot"}) == [
        "naswot_score",
        "latency_ms",
    ]
    assert metric_names("mnas", {"name": "ensemble"}) == ["reward"]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("names", [None, ["mine", "ms"]], ids=["unnamed", "named"])
def test_a_resume_names_an_unnamed_study_and_keeps_given_names(
    tmp_path: Path, names: list[str] | None
) -> None:
    # A study of an earlier version (no names, no protocol), or one its user named.
    study = optuna.create_study(
        study_name="mbconv_pareto",
        storage=make_storage(None, run_dir=tmp_path),
        directions=["maximize", "minimize"],
    )
    if names is not None:
        study.set_metric_names(names)
    resumed = run_search(tiny("search.n_trials=1", "sampler=random"), run_dir=tmp_path)
    assert len(resumed.study.trials) == 1
    assert resumed.study.metric_names == (names or ["accuracy", "latency_ms"])


def test_the_progress_bar_shows_the_score(scored: dict[str, Any]) -> None:
    study: optuna.Study = scored["result"].study
    progress = Progress(3, enabled=True)
    try:
        progress(study, None)
        postfix = progress.bar.postfix
    finally:
        progress.close()
    best = max(r.accuracy for r in scored["result"].results.front)
    assert f"best={best:.4g}@" in postfix and "%" not in postfix


def test_wandb_logs_a_score(scored: dict[str, Any]) -> None:
    from tests.test_wandb import _history, _items, _records, _table, _visualize

    (run,) = (scored["run_dir"] / "wandb").glob("offline-run-*")
    logged = {"run": run, "records": list(_records(run))}
    per_trial = [h for h in _history(logged) if "trial" in h]
    assert len(per_trial) == 3
    assert all("score" in h and "accuracy" not in h for h in per_trial)
    table = _table(logged, "trials_table")
    assert "score" in table["columns"] and "accuracy" not in table["columns"]
    assert "score" in _table(logged, "pareto_front")["columns"]
    chart = _visualize(logged, "pareto_scatter")["panel_config"]
    assert chart["fieldSettings"] == {"x": "latency_ms", "y": "score"}
    assert "ensemble score vs latency" in chart["stringSettings"]["title"]
    summary: dict[str, Any] = {}
    for r in logged["records"]:
        if r.WhichOneof("record_type") == "summary":
            summary.update(_items(r, "summary"))
    assert summary["first_objective"] == "ensemble_score"


def test_an_accuracy_study_still_says_accuracy(tmp_path: Path) -> None:
    result = run_search(tiny("search.n_trials=2", "sampler=random"), run_dir=tmp_path)
    assert result.results.objective == FirstObjective()
    header = _header(_text(front_table(result.results.front)))
    assert "accuracy %" in header and "score" not in header
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert doc["first_objective"] == {
        "key": "accuracy",
        "name": "accuracy",
        "label": "proxy accuracy (%)",
    }
    assert doc["objectives"] == {"accuracy": "maximize", "latency_ms": "minimize"}
    assert set(doc["reference_point"]) == {"accuracy", "latency_ms"}
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert {r["objective"] for r in rows} == {"accuracy"}
    assert result.study.metric_names == ["accuracy", "latency_ms"]
    progress = Progress(2, enabled=True)
    try:
        progress(result.study, None)
        assert "%@" in progress.bar.postfix
    finally:
        progress.close()
