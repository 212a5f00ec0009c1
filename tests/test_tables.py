"""Table-backed evaluation: accuracy and latency read from a benchmark's table (evaluator=table,
latency=table), checked on fixtures the tests write and on a slice of NAS-Bench-201's table."""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from nas import ConfigError, TrialRecord, compose, run_search
from nas._accuracy.table import BenchmarkEvaluator
from nas._data.tables import read_table
from nas._latency.table import BenchmarkLatency
from nas._search.run import latency_from_config
from nas.measure import make_evaluator
from tests.test_benchmark_spaces import NB201, needs_nb201


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with gzip.open(path, "wt", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "bench.csv.gz",
        [
            {"unique_str": "a", "acc": 90.0, "acc12": 60.0, "lat_ms_phone": 10.0, "note": "x"},
            {"unique_str": "a", "acc": 92.0, "acc12": 62.0, "lat_ms_phone": 12.0, "note": "y"},
            {"unique_str": "b", "acc": 80.0, "acc12": 70.0, "lat_ms_phone": 5.0, "note": "z"},
        ],
    )


def test_rows_of_one_identity_are_averaged_and_text_columns_dropped(table):
    rows = read_table(str(table), "unique_str")
    assert rows["a"] == {"acc": 91.0, "acc12": 61.0, "lat_ms_phone": 11.0}
    assert rows["b"]["acc"] == 80.0


def test_a_json_table_keyed_by_its_own_keys_averages_the_seeds(tmp_path):
    path = tmp_path / "macro.json"
    path.write_text(json.dumps({"0120": {"test_acc": [90.0, 91.0, 92.0], "params": 100}}))
    assert read_table(str(path), "key")["0120"] == {"test_acc": 91.0, "params": 100.0}


def test_the_evaluator_gives_the_partial_then_the_full_accuracy(table):
    ev = BenchmarkEvaluator(path=str(table), accuracy="acc", partial="acc12")
    seen: list[tuple[int, float]] = []
    result = ev(None, None, on_epoch=lambda e, a: seen.append((e, a)) or False, identity="a")
    assert seen == [(1, pytest.approx(0.61)), (2, pytest.approx(0.91))]
    assert result.accuracy == pytest.approx(0.91) and result.epochs == 200
    assert not result.stopped


def test_a_trial_stopped_after_the_partial_value_costs_its_epochs(table):
    ev = BenchmarkEvaluator(path=str(table), accuracy="acc", partial="acc12")
    result = ev(None, None, on_epoch=lambda e, a: True, identity="b")
    assert result.stopped and result.epochs == 12
    assert result.curve == [pytest.approx(0.70)] and result.accuracy == pytest.approx(0.70)


def test_without_a_partial_column_the_curve_is_the_full_accuracy(table):
    ev = BenchmarkEvaluator(path=str(table), accuracy="acc", partial=None, percent=False)
    assert ev(None, None, identity="b").curve == [80.0]


def test_latency_is_the_devices_column(table):
    lat = BenchmarkLatency(path=str(table), device="phone").lookup("a", resolution=32)
    assert lat.median_ms == pytest.approx(11.0) and lat.clock == "table"
    assert "phone" in lat.device and lat.resolution == 32


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda t: BenchmarkLatency(path=str(t), device="watch"),
            "no latency column 'lat_ms_watch'; devices: phone",
        ),
        (lambda t: BenchmarkEvaluator(path=str(t), accuracy="top1"), "no numeric column 'top1'"),
        (
            lambda t: BenchmarkEvaluator(path=str(t), key="arch"),
            "has no column 'arch'; columns: unique_str",
        ),
        (lambda t: BenchmarkEvaluator(path=str(t.parent / "nope.csv")), "no table file"),
        (
            lambda t: BenchmarkEvaluator(path=str(t), accuracy="acc", partial="acc12").check("c"),
            "'c' is not in table",
        ),
    ],
)
def test_bad_tables_name_what_is_wrong(table, make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make(table)


def test_latency_source_must_be_known(table):
    with pytest.raises(
        ConfigError,
        match=r"latency\.source must be one of measured, table, predictor.*, got 'guess'",
    ):
        latency_from_config({"source": "guess"})
    assert isinstance(
        latency_from_config({"source": "table", "path": str(table), "device": "phone"}),
        BenchmarkLatency,
    )


def test_the_evaluator_is_made_by_name(table):
    ev = make_evaluator(name="table", path=str(table), accuracy="acc", partial="acc12")
    assert isinstance(ev, BenchmarkEvaluator)


def nb201_slice(tmp_path: Path, ops: tuple[str, ...]) -> Path:
    """The rows of NAS-Bench-201's table whose cells use only ``ops``."""
    with gzip.open(NB201, "rt") as fh:
        rows = list(csv.DictReader(fh))
    keep = [
        r
        for r in rows
        if all(
            edge.split("~")[0] in ops for edge in r["arch_str"].replace("+", "|").split("|") if edge
        )
    ]
    assert len(keep) == len(ops) ** 6
    return write_csv(tmp_path / "slice.csv.gz", keep)


@needs_nb201
def test_a_table_backed_search_runs_end_to_end_and_records_the_tables_values(tmp_path):
    ops = ("none", "skip_connect", "nor_conv_3x3")
    path = nb201_slice(tmp_path, ops)
    cfg = compose(
        [
            "conf=nb201_table",
            f"space.ops=[{','.join(ops)}]",
            f"evaluator.path={path}",
            f"latency.path={path}",
            "latency.device=pixel3",
            "search.n_trials=40",
            "search.progress=false",
            "report.plots=false",
        ]
    )
    result = run_search(cfg, run_dir=tmp_path / "run")
    rows = read_table(str(path), "unique_str")
    records = [TrialRecord.of(t) for t in result.study.get_trials()]
    assert len(records) == 40
    distinct = {r.genotype_key for r in records}
    assert len(distinct) > 10  # the 729 cells make 3^6 genotypes, fewer identities
    states = {t.state for t in result.study.get_trials()}
    assert states <= {TrialState.COMPLETE, TrialState.PRUNED}
    for rec in records:
        row = rows[rec.genotype_key]
        assert rec.latency_ms == pytest.approx(row["lat_ms_pixel3"])
        assert rec.curve[0] == pytest.approx(row["c10_test_acc_12ep_1seed"] / 100)
        if len(rec.curve) == 2:
            assert rec.accuracy == pytest.approx(row["c10_test_acc_200ep"] / 100)
    doc = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert doc["front"] and all(math.isfinite(f["latency_ms"]) for f in doc["front"])


@needs_nb201
def test_a_table_that_lacks_the_spaces_networks_fails_before_the_study(tmp_path):
    path = nb201_slice(tmp_path, ("none", "skip_connect"))
    cfg = compose(
        ["conf=nb201_table", f"evaluator.path={path}", f"latency.path={path}", "search.n_trials=2"]
    )
    with pytest.raises(ConfigError, match=r"evaluator: network .* is not in table"):
        run_search(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "study.journal").exists()


@needs_nb201
def test_a_table_backed_study_refuses_a_resume_with_another_device(tmp_path):
    path = nb201_slice(tmp_path, ("none", "skip_connect", "nor_conv_3x3"))

    def cfg(device: str, n_trials: int) -> Any:
        return compose(
            [
                "conf=nb201_table",
                "space.ops=[none,skip_connect,nor_conv_3x3]",
                f"evaluator.path={path}",
                f"latency.path={path}",
                f"latency.device={device}",
                f"search.n_trials={n_trials}",
                "search.progress=false",
                "report.plots=false",
            ]
        )

    run_search(cfg("pixel3", 5), run_dir=tmp_path / "run")
    journal = tmp_path / "run" / "study.journal"
    before = journal.read_bytes()
    with pytest.raises(
        ConfigError, match=r"latency from table column 'lat_ms_pixel3', not 'lat_ms_raspi4'"
    ):
        run_search(cfg("raspi4", 10), run_dir=tmp_path / "run")
    assert journal.read_bytes() == before  # nothing written
    resumed = run_search(cfg("pixel3", 8), run_dir=tmp_path / "run")
    assert len(resumed.study.get_trials()) == 8
