"""``python -m nas train``: the recipe, resume after a kill, distillation, pruning, bad input.

Most runs train nas's tiny CNN space (two Conv-BN-ReLU stages, 16 px) on digits with one
thread, the report's ONNX, int8 and latency figures off; the end-to-end runs with every figure
are marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import nas
from nas import ConfigError
from nas.__main__ import main
from nas._train import prune
from nas._train.cli import arch_override
from nas._train.config import TrainSettings, compose_train
from nas._train.distill import distillation_loss
from nas._train.loop import augment, warmup_cosine
from nas._train.run import run_train

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "train.threads=1",
    "train.progress=false",
    "train.report.onnx=false",
    "train.report.int8=false",
    "train.report.latency=false",
    "train.batch_size=32",
    "train.lr=0.1",
]


class Killed(Exception):
    """Stands in for a kill: raised from the step callback, it ends the run mid-epoch."""


def tiny_arch(path: Path, *, num_classes: int = 10, width: int = 8) -> Path:
    space = nas.space.make_space(
        "tiny_cnn", resolution=16, stages=2, widths=[width, 2 * width], kernels=[3], depths=[1]
    )
    return nas.save_arch(space.arch(space.random_genotype(0), num_classes=num_classes), path)


def mbconv_arch(path: Path) -> Path:
    space = nas.space.make_space("mbconv", resolution=32, width_mult=0.25, depth_mult=0.25)
    return nas.save_arch(space.arch(space.random_genotype(0), num_classes=10), path)


def cfg_for(arch: Path, *overrides: str):
    return compose_train([f"train.arch={arch}", *QUICK, *overrides])


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "weights.pt", weights_only=True)


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


# --- config ------------------------------------------------------------------------------------


def test_train_yaml_states_the_schema_defaults() -> None:
    composed = compose_train([])
    default = TrainSettings()
    for f in fields(TrainSettings):
        if f.name in ("teacher", "prune", "report"):
            sub = getattr(default, f.name)
            for g in fields(sub):
                assert composed.train[f.name][g.name] == getattr(sub, g.name), (f.name, g.name)
        else:
            assert composed.train[f.name] == getattr(default, f.name), f.name


def test_run_dir_is_named_after_the_architecture() -> None:
    cfg = compose_train(["train.arch=runs/archs/trial_7.yaml"], return_hydra_config=True)
    assert str(cfg.hydra.run.dir) == "outputs/train/trial_7"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"epochs": 0}, "train.epochs"),
        ({"optimizer": "lamb"}, "train.optimizer"),
        ({"lr": 0}, "train.lr"),
        ({"ema": 1.0}, "train.ema"),
        ({"label_smoothing": 1.0}, "train.label_smoothing"),
        ({"teacher": {"zoo": "efficientnet_b0"}}, "train.teacher.weights"),
        ({"teacher": {"arch": "a.yaml", "zoo": "x", "weights": "w"}}, "train.teacher"),
        ({"prune": {"method": "random"}}, "train.prune.method"),
        ({"prune": {"amount": 1.0}}, "train.prune.amount"),
        ({"prune": {"norm": 3}}, "train.prune.norm"),
        ({"typo": 1}, "train.typo"),
    ],
)
def test_bad_settings_are_named(override: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        TrainSettings.from_config(override)


def test_the_positional_arch_becomes_an_override() -> None:
    assert arch_override(["a b/it's.yaml", "train.epochs=1"]) == [
        "train.arch='a b/it\\'s.yaml'",
        "train.epochs=1",
    ]
    cfg = compose_train(arch_override(["a b/it's.yaml"]))
    assert cfg.train.arch == "a b/it's.yaml"
    with pytest.raises(ValueError, match="one architecture file"):
        arch_override(["a.yaml", "b.yaml"])


# --- pieces of the recipe ----------------------------------------------------------------------


def test_warmup_then_cosine_to_zero() -> None:
    f = warmup_cosine(100, 10)
    assert f(0) == pytest.approx(1 / 11) and f(9) == pytest.approx(10 / 11)
    assert f(10) == 1.0 and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    assert warmup_cosine(10, 0)(0) == 1.0


def test_augmentation_crops_and_flips_from_its_generator() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    a = augment(x, torch.Generator().manual_seed(1), padding=2, flip=True)
    b = augment(x, torch.Generator().manual_seed(1), padding=2, flip=True)
    assert a.shape == x.shape and torch.equal(a, b)
    assert torch.equal(augment(x, torch.Generator(), padding=0, flip=False), x)
    # every output image is a shifted (and perhaps mirrored) window of the zero-padded input
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(2)) for w in windows)


def test_distillation_loss_is_the_weighted_sum() -> None:
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=gen), torch.randn(4, 5, generator=gen)
    y = torch.tensor([0, 1, 2, 3])
    ce = torch.nn.functional.cross_entropy(s, y)
    p_t = torch.softmax(t / 2, 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / 2, 1))).sum(1).mean()
    got = distillation_loss(s, t, y, alpha=0.3, temperature=2.0)
    assert got == pytest.approx(float(0.7 * ce + 0.3 * 4 * kl), rel=1e-5)
    assert distillation_loss(s, t, y, alpha=0.0, temperature=2.0) == pytest.approx(float(ce))


def test_structured_pruning_zeroes_channels_and_their_batchnorm(tmp_path: Path) -> None:
    model = nas.build_model(mbconv_arch(tmp_path / "m.yaml"))
    prune.apply(model, method="structured", amount=0.5, norm=2)
    prune.make_permanent(model)
    assert not any(k.endswith(("_orig", "_mask")) for k in model.state_dict())
    pairs = prune._conv_bn_pairs(model)
    assert pairs
    for conv, bn in pairs:
        dead = conv.weight.flatten(1).abs().amax(1) == 0
        assert int(dead.sum()) == round(0.5 * conv.out_channels) or conv.out_channels == 1
        assert torch.equal(dead, (bn.weight == 0) & (bn.bias == 0))
    # the squeeze-excite convs have no BatchNorm after them: left dense
    assert all((m.fc1.weight != 0).all() for m in model.modules() if hasattr(m, "fc1"))


def test_unstructured_pruning_keeps_a_weight_per_layer() -> None:
    layer = torch.nn.Linear(2, 1)
    prune.apply(torch.nn.Sequential(layer), method="unstructured", amount=0.9)
    assert int((layer.weight != 0).sum()) == 1


# --- training runs -----------------------------------------------------------------------------


def test_train_writes_weights_that_load_model_reads(tmp_path: Path) -> None:
    arch = tiny_arch(tmp_path / "tiny.yaml")
    result = run_train(cfg_for(arch, "train.epochs=2"), run_dir=tmp_path / "run")
    run = tmp_path / "run"
    for name in ("weights.pt", "arch.yaml", "report.json", "checkpoint.pt"):
        assert (run / name).is_file(), name
    assert not (run / "model.onnx").exists()  # train.report.onnx=false
    report = json.loads((run / "report.json").read_text())
    assert [r["epoch"] for r in report["history"]] == [1, 2]
    assert report["model"]["accuracy"] > 0.3  # digits: chance is 0.1
    model = nas.load_model(arch, weights=run / "weights.pt").eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), result.model(x))
    again = nas.load_model(run / "arch.yaml", weights=run / "weights.pt")
    assert (
        yaml.safe_load((run / "arch.yaml").read_text())["metrics"]["accuracy"]
        == (report["model"]["accuracy"])
    )
    assert isinstance(again, torch.nn.Module)


@pytest.mark.parametrize(
    ("extra", "kill_at"),
    [
        # killed in epoch 2 of 3, SGD, with a weight average
        (("train.epochs=3", "train.ema=0.9"), ("train", 60)),
        # killed while fine-tuning after pruning, AdamW, no warm-up
        (
            (
                "train.epochs=1",
                "train.optimizer=adamw",
                "train.lr=0.005",
                "train.warmup_epochs=0",
                "train.prune.method=unstructured",
                "train.prune.finetune_epochs=2",
            ),
            ("finetune", 50),
        ),
    ],
    ids=["train-ema", "finetune"],
)
def test_a_killed_run_resumes_to_the_same_weights(
    tmp_path: Path, extra: tuple[str, ...], kill_at: tuple[str, int]
) -> None:
    arch = tiny_arch(tmp_path / "tiny.yaml")
    cfg = cfg_for(arch, *extra)
    run_train(cfg, run_dir=tmp_path / "whole")

    def kill(phase: str, step: int) -> None:
        if (phase, step) == kill_at:
            raise Killed

    with pytest.raises(Killed):
        run_train(cfg, run_dir=tmp_path / "cut", on_step=kill)
    assert not (tmp_path / "cut" / "weights.pt").exists()
    assert (tmp_path / "cut" / "checkpoint.pt").is_file()
    resumed = run_train(cfg, run_dir=tmp_path / "cut")
    assert resumed.resumed_from is not None and resumed.resumed_from[0] == kill_at[0]
    assert_same_weights(tmp_path / "whole", tmp_path / "cut")
    whole = json.loads((tmp_path / "whole" / "report.json").read_text())
    assert resumed.report["history"] == whole["history"]


def test_a_finished_run_run_again_is_measured_again_unchanged(tmp_path: Path) -> None:
    arch = tiny_arch(tmp_path / "tiny.yaml")
    first = run_train(cfg_for(arch, "train.epochs=1"), run_dir=tmp_path / "run")
    before = weights(tmp_path / "run")
    again = run_train(cfg_for(arch, "train.epochs=1"), run_dir=tmp_path / "run")
    assert again.resumed_from == ("train", 1)
    assert again.report["model"]["accuracy"] == first.report["model"]["accuracy"]
    after = weights(tmp_path / "run")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_distillation_from_a_trained_teacher(tmp_path: Path) -> None:
    teacher = tiny_arch(tmp_path / "teacher.yaml", width=16)
    run_train(cfg_for(teacher, "train.epochs=2"), run_dir=tmp_path / "teacher")
    student = tiny_arch(tmp_path / "student.yaml", width=4)
    result = run_train(
        cfg_for(
            student,
            "train.epochs=1",
            f"train.teacher.arch={teacher}",
            f"train.teacher.weights={tmp_path / 'teacher' / 'weights.pt'}",
            "train.teacher.alpha=0.7",
            "train.teacher.temperature=2",
        ),
        run_dir=tmp_path / "student",
    )
    d = result.report["distillation"]
    assert d["teacher"] == str(teacher) and (d["alpha"], d["temperature"]) == (0.7, 2.0)
    teacher_report = json.loads((tmp_path / "teacher" / "report.json").read_text())
    assert d["teacher_accuracy"] == pytest.approx(teacher_report["model"]["accuracy"])


@pytest.mark.parametrize("method", ["unstructured", "structured"])
def test_pruning_reports_before_and_after(tmp_path: Path, method: str) -> None:
    arch = tiny_arch(tmp_path / "tiny.yaml")
    result = run_train(
        cfg_for(
            arch,
            "train.epochs=1",
            f"train.prune.method={method}",
            "train.prune.amount=0.5",
            "train.prune.finetune_epochs=1",
        ),
        run_dir=tmp_path / "run",
    )
    p = result.report["pruning"]
    model = result.report["model"]
    assert p["method"] == method and p["accuracy_before_finetune"] is not None
    assert p["dense"]["params"] == model["params"]  # zeros, not smaller tensors
    assert model["nonzero_params"] < p["dense"]["nonzero_params"]
    if method == "unstructured":
        assert 0.45 < model["weight_sparsity"] < 0.55
    else:
        convs = [m for m in nas.build_model(arch).modules() if isinstance(m, torch.nn.Conv2d)]
        assert model["zero_conv_channels"] == sum(round(c.out_channels / 2) for c in convs)
    # the pruned weights fit the plain architecture, and the dense ones are kept beside them
    nas.load_model(arch, weights=tmp_path / "run" / "weights.pt")
    nas.load_model(arch, weights=tmp_path / "run" / "dense_weights.pt")
    history = [(r["phase"], r["epoch"]) for r in result.report["history"]]
    assert history == [("train", 1), ("pruned", 0), ("finetune", 1)]


# --- bad input: one line, exit 2, nothing written lost ------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An architecture file and the run directory of a finished one-epoch run on it."""
    root = tmp_path_factory.mktemp("finished")
    arch = tiny_arch(root / "tiny.yaml")
    run_train(cfg_for(arch, "train.epochs=1"), run_dir=root / "run")
    return arch, root / "run"


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def _npz_without_labels(path: Path) -> Path:
    np.savez(path, x_train=np.zeros((20, 8, 8, 3), np.uint8))
    return path


def _bad_yaml(path: Path) -> Path:
    path.write_text("schema_version: 1\nspace: [unclosed\n")
    return path


BAD = {
    "missing-arch": (lambda d, arch: [str(d / "nope.yaml")], "nope.yaml: no such architecture"),
    "damaged-arch": (lambda d, arch: [str(_bad_yaml(d / "bad.yaml"))], "not valid YAML"),
    "weights-do-not-fit": (
        lambda d, arch: [str(arch), f"train.weights={d / 'wide.pt'}"],
        "wide.pt: does not fit",
    ),
    "teacher-other-classes": (
        lambda d, arch: [
            str(arch),
            f"train.teacher.arch={tiny_arch(d / 't4.yaml', num_classes=4)}",
            f"train.teacher.weights={d / 't4.pt'}",
        ],
        "has 4 classes but the data has 10",
    ),
    "data-without-labels": (
        lambda d, arch: [
            str(arch),
            "data=npz",
            f"data.path={_npz_without_labels(d / 'x.npz')}",
        ],
        "missing array(s) y_train",
    ),
    "arch-other-classes-than-data": (
        lambda d, arch: [str(tiny_arch(d / "c4.yaml", num_classes=4))],
        "has 4 classes but data digits has 10",
    ),
    "checkpoint-of-another-recipe": (
        lambda d, arch: [str(arch), "train.lr=0.3"],
        "belongs to another run (train.lr differs",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_loses_nothing(
    case: str, tmp_path: Path, finished: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    arch, run = finished
    shutil.copytree(run, tmp_path / "run")
    before = snapshot(tmp_path / "run")
    wide = tmp_path / "wide.pt"
    torch.save(nas.build_model(tiny_arch(tmp_path / "wide.yaml", width=16)).state_dict(), wide)
    torch.save(nas.build_model(tiny_arch(tmp_path / "t4.yaml", num_classes=4)).state_dict(),
               tmp_path / "t4.pt")  # fmt: skip
    make, message = BAD[case]
    argv = ["train", *QUICK, "train.epochs=1", *make(tmp_path, arch)]
    code = main([*argv, f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("nas train: error: "), err
    assert message in err[0], err[0]
    assert snapshot(tmp_path / "run") == before


def test_a_teacher_zoo_network_with_other_classes_is_refused(tmp_path: Path) -> None:
    weights_file = tmp_path / "b0.pt"
    torch.save(nas.zoo.create("efficientnet_b0", num_classes=100).state_dict(), weights_file)
    cfg = cfg_for(
        tiny_arch(tmp_path / "tiny.yaml"),
        "train.teacher.zoo=efficientnet_b0",
        f"train.teacher.weights={weights_file}",
    )
    with pytest.raises(ConfigError, match="100 classes but the data has 10"):
        run_train(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --- the real command line ---------------------------------------------------------------------


def nas_train(*args: str, **kwargs) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "nas", "train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
def test_cli_writes_every_file_and_prints_the_table(tmp_path: Path) -> None:
    arch = mbconv_arch(tmp_path / "net.yaml")
    proc = nas_train(
        str(arch),
        "train.epochs=1",
        "train.threads=1",
        "train.progress=false",
        "train.report.calibration_images=64",
        "latency.max_seconds=0.2",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert "int8 %" in out and "results in" in out
    run = tmp_path / "run"
    for name in ("weights.pt", "model.onnx", "report.json", "arch.yaml", ".hydra/config.yaml"):
        assert (run / name).is_file(), name
    report = json.loads((run / "report.json").read_text())
    m = report["model"]
    assert 0 <= m["int8_accuracy"] <= 1 and m["onnx_accuracy"] == pytest.approx(m["accuracy"])
    assert m["latency"]["median_ms"] > 0 and m["latency"]["backend"] == "torch"
    assert m["params"] == sum(p.numel() for p in nas.build_model(arch).parameters())
    import onnxruntime

    session = onnxruntime.InferenceSession(str(run / "model.onnx"))
    model = nas.load_model(arch, weights=run / "weights.pt", fused=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(session.run(None, {"images": x.numpy()})[0], expected, atol=1e-4)


@pytest.mark.slow
def test_cli_sigkill_mid_epoch_then_resume_gives_the_same_weights(tmp_path: Path) -> None:
    arch = tiny_arch(tmp_path / "tiny.yaml")
    args = [str(arch), *QUICK, "train.batch_size=32", "train.epochs=4", "train.ema=0.99"]
    whole = nas_train(*args, f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.wait(timeout=600) == 0, whole.stderr.read() if whole.stderr else ""
    cut = nas_train(*args, f"hydra.run.dir={tmp_path / 'cut'}")
    checkpoint = tmp_path / "cut" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    cut.send_signal(signal.SIGKILL)
    cut.wait(timeout=60)
    assert cut.returncode == -signal.SIGKILL
    assert not (tmp_path / "cut" / "report.json").exists()
    again = nas_train(*args, f"hydra.run.dir={tmp_path / 'cut'}")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    assert "resumed after train epoch" in out
    assert_same_weights(tmp_path / "whole", tmp_path / "cut")


@pytest.mark.slow
def test_pruning_report_times_both_networks_in_eager_and_onnx_runtime(tmp_path: Path) -> None:
    arch = tiny_arch(tmp_path / "tiny.yaml")
    result = run_train(
        compose_train(
            [
                f"train.arch={arch}",
                "train.threads=1",
                "train.progress=false",
                "train.epochs=1",
                "train.prune.method=structured",
                "train.report.int8=false",
                "train.report.calibration_images=32",
                "latency.max_seconds=0.2",
            ]
        ),
        run_dir=tmp_path / "run",
    )
    p, m = result.report["pruning"], result.report["model"]
    for fig in (p["dense"], m):
        assert set(fig["latency_by_backend"]) == {"torch", "onnxruntime"}
        assert all(v["median_ms"] > 0 for v in fig["latency_by_backend"].values())
    assert (tmp_path / "run" / "model.onnx").is_file()
    assert "no speed-up is expected" in p["note"]


@pytest.mark.slow
def test_wandb_logs_epochs_offline(tmp_path: Path) -> None:
    arch = tiny_arch(tmp_path / "tiny.yaml")
    run_train(
        cfg_for(arch, "train.epochs=1", "logger=wandb", f"logger.dir={tmp_path / 'wb'}"),
        run_dir=tmp_path / "run",
    )
    assert list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
