"""A catalogue of bad inputs: each gives one error line naming the problem, a non-zero exit,
and leaves what was recorded before untouched.

Every case runs through the CLI's entry point (``nas.__main__.main``) in this process, which
is the code ``python -m nas`` runs minus the interpreter start; the slow test runs a share of
them again as real ``python -m nas`` processes. The run directory every search case points at
holds a finished study: its journal and results must be byte-identical afterwards. Files
crafted to execute code (YAML tags, pickles in weights, npz and CIFAR batches) must be refused
without running anything.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import nas
from nas import ConfigError, load_data, run_search
from nas.__main__ import main
from nas._storage.storage import make_storage
from tests.test_distributed import POSTGRES_URL, ROOT, cli_env, needs_postgres
from tests.test_search import TINY, tiny


class _RunsCode:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    message: str
    real: bool = False  # also run as a real `python -m nas` process (slow test)


def search(*overrides: str) -> tuple[str, ...]:
    return ("search", *TINY, *overrides, "hydra.run.dir={run}")


PG = "postgresql://nas:{pw}@{pg_host}/{db}"
CASES = [
    # --- CLI overrides and configs
    Case("n_trials_negative", search("search.n_trials=-3"), "search.n_trials must be >= 1", True),
    Case("n_trials_not_int", search("search.n_trials=abc"), "search.n_trials=abc"),
    Case("n_workers_zero", search("search.n_workers=0"), "search.n_workers must be >= 1"),
    Case("timeout_negative", search("search.timeout=-5"), "search.timeout must be > 0"),
    Case(
        "workers_in_memory",
        search("storage.url=:memory:", "search.n_workers=2"),
        "needs a shared storage",
    ),
    Case("unknown_key", search("storage.uri=x"), "storage.uri", True),
    Case("objective_unknown", search("search.objective=fast"), "search.objective"),
    Case("sampler_unknown", search("sampler.name=annealing"), "annealing"),
    Case("sampler_population", search("sampler.population_size=1"), "population_size"),
    Case("preset_unknown", search("conf=no_such_preset"), "no_such_preset"),
    Case("space_resolution", search("space.resolution=4"), "resolution must be"),
    Case("space_kernel", search("space.kernel=[4]"), "kernel"),
    Case("space_unknown", search("space.name=no_such_space"), "unknown search space", True),
    Case(
        "grid_too_large",
        search("sampler=grid", "space.kernel=[3,5,7]", "space.expand=[1,3,4,6]"),
        "grid search takes at most",
    ),
    Case("evaluator_epochs", search("evaluator.epochs=0"), "epochs"),
    Case("evaluator_optimizer", search("evaluator.optimizer=adam"), "optimizer"),
    Case("resume_other_space", search("space.kernel=[5]"), "different space_options", True),
    Case("resume_other_objective", search("search.objective=mnas"), "exists with directions"),
    # --- data
    Case("data_unknown", search("data.name=imagenet"), "unknown dataset name 'imagenet'"),
    Case("data_missing", search("data=npz", "data.path={bad}/nope.npz"), "does not exist"),
    Case("data_not_npz", search("data=npz", "data.path={bad}/text.npz"), "cannot read", True),
    Case("data_npz_keys", search("data=npz", "data.path={bad}/keys.npz"), "missing array(s)"),
    Case("data_npz_pickle", search("data=npz", "data.path={bad}/pickled.npz"), "allow_pickle"),
    Case(
        "data_cifar_pickle",
        search("data=cifar10", "data.path={bad}/cifar"),
        "refusing to load posix.system",
        True,
    ),
    # --- storage URLs
    Case("storage_scheme", search("storage.url=redis://localhost/0"), "unsupported scheme"),
    Case(
        "storage_not_journal",
        search("storage.url={bad}/notes.txt"),
        "is not an Optuna journal file",
        True,
    ),
    Case("storage_damaged", search("storage.url={bad}/damaged.journal"), "is damaged"),
    Case(
        "storage_sqlite_folder",
        search("storage.url=sqlite:////no/such/folder/study.db"),
        "storage.url: cannot open sqlite:////no/such/folder",
    ),
    Case(
        "storage_pg_password",
        search(f"storage.url={PG.format(pw='WRONG', pg_host='{pg_host}', db='nas')}"),
        "password authentication failed",
    ),
    Case(
        "storage_pg_database",
        search(f"storage.url={PG.format(pw='nas', pg_host='{pg_host}', db='no_such_db')}"),
        'database "no_such_db" does not exist',
    ),
    # --- architecture and weights files
    Case("arch_yaml_code", ("show", "{bad}/code.yaml"), "could not determine a constructor", True),
    Case("export_yaml_code", ("export", "{bad}/code.yaml"), "could not determine a constructor"),
    Case(
        "weights_pickle_code",
        ("export", "{bad}/arch.yaml", "--weights", "{bad}/code.pt"),
        "refused or unreadable weights file",
        True,
    ),
    Case(
        "weights_other_arch",
        ("export", "{bad}/arch.yaml", "--weights", "{bad}/other.pt"),
        "does not fit",
    ),
    Case(
        "arch_unknown_space", ("export", "{bad}/space.yaml"), "unknown search space 'no_such_space'"
    ),
    Case("arch_schema", ("show", "{bad}/schema.yaml"), "schema_version 99 is not supported"),
    Case("arch_genotype", ("export", "{bad}/genotype.yaml"), "s1.kernel"),
    Case("arch_missing", ("show", "{bad}/no_such_arch.yaml"), "no such architecture file"),
    Case("run_pareto_corrupt", ("show", "{bad}/run"), "not valid JSON"),
    Case("export_format", ("export", "{bad}/arch.yaml", "--format", "tflite"), "invalid choice"),
    Case("subcommand_unknown", ("frobnicate",), "unknown subcommand 'frobnicate'"),
]
NEEDS_POSTGRES = {"storage_pg_password", "storage_pg_database"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory holding a finished two-trial study and its results."""
    run = tmp_path_factory.mktemp("recorded")
    run_search(tiny("search.n_trials=2", "sampler=random"), run_dir=run)
    assert (run / "pareto.json").is_file() and (run / "study.journal").is_file()
    return run


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, recorded: Path) -> Path:
    """Bad files of every kind; ``MARKER`` appears if any of them runs its code."""
    d = tmp_path_factory.mktemp("bad")
    code = _RunsCode(d / "MARKER")
    (d / "text.npz").write_text("not a zip archive")
    np.savez(d / "keys.npz", a=np.zeros((2, 8, 8, 3), np.uint8), b=np.zeros(2, np.int64))
    np.savez(d / "pickled.npz", x_train=np.array([code], dtype=object), y_train=np.zeros(1))
    (d / "cifar").mkdir()
    (d / "cifar" / "data_batch_1").write_bytes(pickle.dumps(code))
    for i in range(2, 6):
        (d / "cifar" / f"data_batch_{i}").write_bytes(b"")
    (d / "notes.txt").write_text("my notes\n")
    record = {"op_code": 0, "worker_id": "w", "study_name": "x", "directions": [1]}
    (d / "damaged.journal").write_text(f"{json.dumps(record)}\n{{oops\n{json.dumps(record)}\n")

    arch = next((recorded / "archs").glob("trial_*.yaml"))
    shutil.copy(arch, d / "arch.yaml")
    text = arch.read_text()
    (d / "code.yaml").write_text(
        text + f'genotype_hook: !!python/object/apply:os.system ["touch {d / "MARKER"}"]\n'
    )
    (d / "space.yaml").write_text(text.replace("space: mbconv", "space: no_such_space"))
    (d / "schema.yaml").write_text(text.replace("schema_version: 1", "schema_version: 99"))
    (d / "genotype.yaml").write_text(text.replace("s1.kernel: 3", "s1.kernel: 4"))
    torch.save({"weight": code}, d / "code.pt")
    other = nas.space.make_space("mbconv", resolution=32).random_genotype(1)
    torch.save(
        nas.space.make_space("mbconv", resolution=32).build(other, num_classes=3).state_dict(),
        d / "other.pt",
    )
    (d / "run").mkdir()
    (d / "run" / "pareto.json").write_text('{"front": [')
    return d


def _snapshot(*folders: Path) -> dict[str, bytes]:
    """Every file's bytes, but Hydra's record of the last command (.hydra/, its log)."""
    files = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(folder)
            if p.is_file() and rel.parts[0] != ".hydra" and p.suffix != ".log":
                files[str(p)] = p.read_bytes()
    return files


def _args(case: Case, run: Path, bad: Path) -> list[str]:
    pg_host = POSTGRES_URL.split("@", 1)[1].split("/", 1)[0] if POSTGRES_URL else ""
    return [a.format(run=run, bad=bad, pg_host=pg_host) for a in case.args]


def _check(case: Case, code: int, stderr: str) -> None:
    assert code != 0, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr
    assert errors[0].startswith(("nas", "python -m nas")), stderr
    assert case.message in errors[0], stderr
    assert "WRONG" not in stderr, "a password was printed"


def _params(real: bool = False) -> list[object]:
    return [
        pytest.param(c, id=c.id, marks=needs_postgres if c.id in NEEDS_POSTGRES else ())
        for c in CASES
        if c.real or not real
    ]


@pytest.mark.parametrize("case", _params())
def test_bad_input(case, recorded, bad, capsys, monkeypatch):
    before = _snapshot(recorded, bad)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # the search subcommand sets it for Hydra
    handlers = list(logging.root.handlers)
    try:
        code = main(_args(case, recorded, bad))
    except SystemExit as exit:  # argparse
        code = exit.code
    finally:
        logging.root.handlers[:] = handlers  # Hydra configures logging for its run
    _check(case, code, capsys.readouterr().err)
    assert _snapshot(recorded, bad) == before, "a failed command changed recorded files"
    assert not (bad / "MARKER").exists(), "a crafted file ran its code"


@pytest.mark.slow
def test_bad_input_in_real_processes(recorded, bad):
    """A share of the catalogue as real `python -m nas` processes (two at a time)."""
    cases = [c for c in CASES if c.real]
    before = _snapshot(recorded, bad)

    def run(case: Case) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nas", *_args(case, recorded, bad)],
            cwd=ROOT,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(run, cases))
    for case, out in zip(cases, outcomes, strict=True):
        _check(case, out.returncode, out.stderr)
        assert out.returncode == 2, (case.id, out.stderr)
    assert _snapshot(recorded, bad) == before
    assert not (bad / "MARKER").exists()
    assert len(cases) >= 8


# --- the same kinds of input through the Python API ---------------------------------------


def test_api_bad_inputs_name_the_problem(bad):
    with pytest.raises(nas.ArchFileError, match=r"s1\.kernel"):
        nas.build_model(bad / "genotype.yaml")
    with pytest.raises(nas.ArchFileError, match="could not determine a constructor"):
        nas.load_arch(bad / "code.yaml")
    with pytest.raises(nas.ArchFileError, match="refused or unreadable weights file"):
        nas.load_model(bad / "arch.yaml", weights=bad / "code.pt")
    with pytest.raises(ValueError, match="is not a file"):
        load_data(name="npz", path=str(bad / "cifar"), resolution=16)
    with pytest.raises(ConfigError, match="no mysql driver is installed"):
        make_storage("mysql://u:secret@localhost/db", run_dir=bad)
    assert not (bad / "MARKER").exists()


def test_the_catalogue_is_big_enough():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)
