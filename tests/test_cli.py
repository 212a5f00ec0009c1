"""The real command line, in subprocesses: `python -m nas search|show|export`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import nas
from tests.test_search import TINY

pytestmark = pytest.mark.slow

#: A grid of two networks whose front holds both whatever the timing noise: a fast CNN of one
#: channel (one feature: chance accuracy) and one of 64 channels, about 3x slower, that learns
#: the synthetic data (accuracy 1.0 after 4 epochs). So the front is always timed again.
TWO_NETWORK_FRONT = [
    "space=tiny_cnn",
    "space.stages=1",
    "space.widths=[1,64]",
    "space.kernels=[3]",
    "space.depths=[2]",
    "data=synthetic",
    "evaluator.epochs=4",
    "sampler=grid",
    "search.n_trials=2",
    "latency.warmup=1",
    "latency.min_rounds=3",
    "latency.max_seconds=0.1",
    "search.progress=false",
]


def nas_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nas", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_no_subcommand_lists_them():
    out = nas_cli()
    assert out.returncode == 0
    for sub in ("search", "show", "export", "dashboard"):
        assert sub in out.stdout


def test_search_end_to_end_writes_every_result_file(tmp_path):
    run = tmp_path / "run"
    out = nas_cli("search", *TWO_NETWORK_FRONT, f"hydra.run.dir={run}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Pareto front" in out.stdout
    for name in (
        "pareto.json",
        "trials.csv",
        "pareto.png",
        "pareto.html",
        "hypervolume.png",
        "study.journal",
        ".hydra/config.yaml",
    ):
        assert (run / name).is_file(), name
    assert (run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((run / "pareto.json").read_text())
    assert doc["reference_point"]["latency_ms"] > 0 and doc["hypervolume"] > 0
    front = sorted(doc["front"], key=lambda rec: rec["latency_ms"])
    assert [rec["genotype"]["s1.width"] for rec in front] == [1, 64]
    assert front[0]["accuracy"] < front[1]["accuracy"]
    # The front is timed again, side by side: the same order, as latency_final.
    final = [rec["latency_final"]["median_ms"] for rec in front]
    assert 0 < final[0] < final[1]
    archs = sorted((run / "archs").glob("trial_*.yaml"))
    assert len(archs) == len(doc["front"]) > 0
    for path in archs:
        arch = yaml.safe_load(path.read_text())
        model = nas.build_model(path).eval()
        x = torch.randn(2, 3, arch["resolution"], arch["resolution"])
        y = model(x)
        assert y.shape == (2, arch["num_classes"]) and torch.isfinite(y).all()

    shown = nas_cli("show", str(run))
    assert shown.returncode == 0 and "Pareto front" in shown.stdout
    arch_shown = nas_cli("show", str(archs[0]))
    assert arch_shown.returncode == 0, arch_shown.stderr
    exported = nas_cli(
        "export", str(archs[0]), "--format", "torchscript", "--output", str(tmp_path / "m.pt")
    )
    assert exported.returncode == 0, exported.stderr
    assert torch.jit.load(str(tmp_path / "m.pt")) is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["conf=no_such_preset"], "no_such_preset"),
        (["sampler=annealing"], "annealing"),
        (["search.n_trails=3"], "n_trails"),
        (["search.n_trials=many"], "search.n_trials=many"),
        (["storage.url=postgresql://nas:pw@127.0.0.1:1/nas"], "cannot open postgresql://nas:***@"),
    ],
)
def test_bad_input_one_line_and_non_zero_exit(tmp_path, args, message):
    out = nas_cli("search", *TINY, *args, f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("nas search: error: ") and out.stderr.count("\n") == 1
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_a_postgres_password_from_the_environment_stays_out_of_the_run_and_its_messages(tmp_path):
    """docs/distributed.md: a URL read with ${oc.env:...} keeps the password out of the run's
    .hydra/config.yaml, and messages print it as ***. No server is needed: nothing listens on
    port 1, so the search stops at opening the storage, after Hydra has written .hydra/."""
    run = tmp_path / "run"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nas",
            "search",
            *TINY,
            "storage=postgres",
            "storage.url=${oc.env:NAS_TEST_SECRET_URL}",
            f"hydra.run.dir={run}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "NAS_TEST_SECRET_URL": "postgresql://nas:s3cret-pw@127.0.0.1:1/nas"},
    )
    assert out.returncode == 2
    assert "cannot open postgresql://nas:***@127.0.0.1:1/nas" in out.stderr
    assert "s3cret-pw" not in out.stdout + out.stderr
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert config["storage"]["url"] == "${oc.env:NAS_TEST_SECRET_URL}"
    written = [p for p in run.rglob("*") if p.is_file()]
    assert written and not [p for p in written if b"s3cret-pw" in p.read_bytes()]


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = nas_cli("search", *TINY, f"hydra.run.dir={blocker / 'run'}", timeout=120)
    assert out.returncode == 2
    assert out.stderr == (
        f"nas search: error: cannot create output directory {blocker / 'run'} (Not a directory)\n"
    )
    assert blocker.read_text() == "not a folder"


def test_help_prints_hydras_help_with_the_apps_header():
    out = nas_cli("search", "--help", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "python -m nas search: multi-objective neural architecture search" in out.stdout
    for group in ("space", "sampler", "latency", "storage"):  # Hydra lists the config groups
        assert f"{group}:" in out.stdout


def test_cfg_job_prints_the_composed_config_and_runs_nothing(tmp_path):
    run = tmp_path / "run"
    out = nas_cli(
        "search",
        "conf=inception_widths",
        "search.n_trials=7",
        f"hydra.run.dir={run}",
        "--cfg",
        "job",
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["space"]["name"] == "inception" and cfg["search"]["n_trials"] == 7
    assert cfg["search"]["study_name"] == "inception_widths"
    assert not run.exists(), "printing the config starts no search"


def test_multirun_runs_one_study_per_value(tmp_path):
    sweep = tmp_path / "sweep"
    out = nas_cli(
        "search",
        "-m",
        *TINY,
        "report.plots=true",
        "search.n_trials=2",
        "sampler=random,tpe",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for job, sampler in (("0", "random"), ("1", "tpe")):
        doc = json.loads((sweep / job / "pareto.json").read_text())
        assert doc["sampler"] == sampler and doc["n_trials"] == 2
        assert (sweep / job / "study.journal").is_file()


def test_dashboard_serves_the_runs_study(tmp_path):
    pytest.importorskip("optuna_dashboard")
    import socket
    import time
    import urllib.request

    run = tmp_path / "run"
    made = nas_cli("search", *TINY, "search.n_trials=2", f"hydra.run.dir={run}")
    assert made.returncode == 0, made.stderr[-2000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas", "dashboard", str(run), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies") as response:
                    studies = json.loads(response.read())["study_summaries"]
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.5)
        assert [s["study_name"] for s in studies] == ["mbconv_pareto"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dashboard_bad_target_is_one_line():
    out = nas_cli("dashboard", "/no/such/run", timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "nas dashboard: error: /no/such/run: no study.journal here "
        "(is it a run directory of `nas search`?)"
    ]


def test_export_to_onnx_from_the_command_line_runs_in_onnxruntime(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    space = nas.space.make_space("mbconv", resolution=32, width_mult=0.25, depth_mult=0.5)
    arch = nas.save_arch(space.arch(space.random_genotype(0), num_classes=10), tmp_path / "a.yaml")
    model = nas.build_model(arch)
    torch.manual_seed(1)
    with torch.no_grad():  # weights and statistics of its own, so the export must load them
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.mul_(1 + torch.rand_like(tensor))
            elif tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn_like(tensor))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    out = nas_cli(
        "export",
        str(arch),
        "--format",
        "onnx",
        "--weights",
        str(tmp_path / "w.pt"),
        "--output",
        str(tmp_path / "m.onnx"),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"wrote {tmp_path / 'm.onnx'}"
    session = onnxruntime.InferenceSession(
        str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]
    )
    x = torch.randn(3, 3, 32, 32)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model.eval()(x)
    assert got.shape == (3, 10)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=0, atol=1e-4)
