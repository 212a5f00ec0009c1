"""Show and export: the layer tables, and exported files that reload to the same outputs."""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch

import nas
from nas import ArchFileError, describe_arch, export_model
from search_spaces.mbconv import B0_GENOTYPE

HAVE_ONNX = all(importlib.util.find_spec(p) for p in ("onnx", "onnxscript", "onnxruntime"))


@pytest.fixture
def small_arch_file(tmp_path: Path, make_small_space) -> Path:
    space = make_small_space("mbconv")
    return nas.save_arch(space.arch(space.random_genotype(0), num_classes=10), tmp_path / "t.yaml")


# --- show --------------------------------------------------------------------------------------


def test_b0_table_is_the_papers_table_1(tmp_path: Path) -> None:
    rows = nas.zoo.efficientnet("b0").layer_table(224)
    table = [(r["operator"], r["input"], r["out"], r["layers"]) for r in rows]
    assert table == [
        ("Conv3x3", "224x224", 32, 1),
        ("MBConv1, k3x3", "112x112", 16, 1),
        ("MBConv6, k3x3", "112x112", 24, 2),
        ("MBConv6, k5x5", "56x56", 40, 2),
        ("MBConv6, k3x3", "28x28", 80, 3),
        ("MBConv6, k5x5", "14x14", 112, 3),
        ("MBConv6, k5x5", "14x14", 192, 4),
        ("MBConv6, k3x3", "7x7", 320, 1),
        ("Conv1x1 & Pooling & FC", "7x7", 1280, 1),
    ]
    assert [r["stride"] for r in rows[1:-1]] == [1, 2, 2, 2, 1, 2, 1]
    assert {r["SE"] for r in rows[1:-1]} == {"0.25"}
    assert sum(r["params"] for r in rows) == 5_288_548


def test_describe_b0_file(tmp_path: Path) -> None:
    # At 128 rather than 224 to keep the test quick; test_profile checks B0's MACs at 224.
    space = nas.space.make_space("mbconv", resolution=128)
    path = nas.save_arch(space.arch(B0_GENOTYPE, num_classes=1000), tmp_path / "b0.yaml")
    macs = nas.profile(nas.zoo.efficientnet("b0"), resolution=128).conv_linear_macs
    text = describe_arch(path)
    assert str(path) in text
    assert re.search(r"space\s+mbconv", text) and re.search(r"classes\s+1000", text)
    assert "k3e1se-k3e6se-k5e6se-k3e6se-k5e6se-k5e6se-k3e6se" in text
    assert re.search(r"params\s+5,288,548", text)
    assert re.search(rf"MACs, conv \+ linear\s+{macs:,}\s+{macs / 1e6:.0f} M", text)
    assert "\x1b[" not in text  # plain text, no terminal colour codes


def test_googlenet_table_has_the_six_widths_and_the_branch_form() -> None:
    space = nas.space.make_space(
        "inception", resolution=32, modules=["3a"], widths=[1.0], branch5x5=["3x3x2"]
    )
    model = space.build(space.random_genotype(0), num_classes=10)
    rows = {r["stage"]: r for r in model.layer_table(32)}
    widths = ["#1x1", "#3x3 red", "#3x3", "#5x5 red", "#5x5", "pool proj"]
    assert [rows["3a"][k] for k in widths] == [64, 96, 128, 16, 32, 32]
    assert rows["3a"]["form"] == "3x3x2" and rows["3b"]["form"] == "5x5"
    assert [rows["5b"][k] for k in widths] == [384, 192, 384, 48, 128, 128]
    assert rows["5b"]["out"] == 1024
    assert list(rows)[:: len(rows) - 1] == ["stem", "head"]


def test_describe_inception_with_aux_heads(make_small_space) -> None:
    space = nas.space.make_space("inception", resolution=32, width_mult=0.25, aux_logits=True)
    text = describe_arch(space.arch(space.random_genotype(0), num_classes=10))
    assert "Inception modules" in text and "aux x2" in text and "training only" in text
    assert "params, eval/export" in text
    assert "aux_logits=True" in text


def test_describe_compound_shows_the_scaled_member(make_small_space) -> None:
    space = make_small_space("compound")
    text = describe_arch(space.arch({"point": "a1.2_b1.1_g1.15"}, num_classes=10))
    assert "alpha=1.2 beta=1.1 gamma=1.15" in text
    assert re.search(r"resolution\s+40", text)
    assert "MBConv stages" in text and "40x40" in text


def test_describe_bad_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("schema_version: 7\n")
    with pytest.raises(ArchFileError, match=r"broken\.yaml: schema_version 7 is not supported"):
        describe_arch(path)
    path.write_text("schema_version: 1\n")
    with pytest.raises(ArchFileError, match=r"broken\.yaml: missing key"):
        describe_arch(path)


# --- export ------------------------------------------------------------------------------------


def test_torchscript_export_reloads_to_the_same_outputs(small_arch_file: Path) -> None:
    path = export_model(small_arch_file, format="torchscript")
    assert path == small_arch_file.with_name("t.torchscript.pt")
    model = nas.build_model(small_arch_file).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path))
    for batch in (1, 4):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, small_arch_file.name]


def test_export_loads_the_given_weights(small_arch_file: Path, tmp_path: Path) -> None:
    trained = nas.build_model(small_arch_file).eval()
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    path = export_model(
        small_arch_file,
        format="torchscript",
        output=tmp_path / "out" / "m.pt",
        weights=tmp_path / "w.pt",
    )
    assert path == tmp_path / "out" / "m.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained(x))


def test_export_inception_drops_the_aux_heads(tmp_path: Path) -> None:
    space = nas.space.make_space("inception", resolution=32, width_mult=0.25, aux_logits=True)
    arch = space.arch(space.random_genotype(0), num_classes=10)
    path = export_model(arch, format="torchscript", output=tmp_path / "g.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        out = torch.jit.load(str(path))(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)


def test_a_failed_check_leaves_no_file(
    small_arch_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nas._export as export

    def corrupt(model, example, path):
        other = nas.build_model(small_arch_file).eval()
        with torch.no_grad():
            other.classifier[-1].bias += 1.0
        export._write_torchscript(other, example, path)

    monkeypatch.setitem(export._WRITERS, "torchscript", corrupt)
    with pytest.raises(RuntimeError, match="does not reproduce the module's output"):
        export_model(small_arch_file, format="torchscript")
    assert sorted(p.name for p in small_arch_file.parent.iterdir()) == [small_arch_file.name]


def test_bad_export_arguments(small_arch_file: Path, make_small_space) -> None:
    with pytest.raises(ValueError, match=r"format must be one of \['torchscript', 'onnx', 'pt2'\]"):
        export_model(small_arch_file, format="tflite")
    space = make_small_space("mbconv")
    with pytest.raises(ValueError, match="output is required"):
        export_model(space.arch(space.random_genotype(0), num_classes=10))
    with pytest.raises(ArchFileError, match=r"nope\.pt: no such weights file"):
        export_model(small_arch_file, weights=small_arch_file.with_name("nope.pt"))


def test_onnx_without_its_packages_says_what_to_install(
    small_arch_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ImportError, match=r'needs .*onnxscript.*pip install "nas\[onnx\]"'):
        export_model(small_arch_file, format="onnx")
    assert not small_arch_file.with_suffix(".onnx").exists()


@pytest.mark.slow
def test_pt2_export_reloads_to_the_same_outputs(small_arch_file: Path) -> None:
    path = export_model(small_arch_file, format="pt2")
    assert path.name == "t.pt2"
    loaded = torch.export.load(str(path)).module()
    model = nas.build_model(small_arch_file).eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ONNX, reason='needs pip install "nas[onnx]" onnxruntime')
def test_onnx_export_runs_in_onnxruntime(small_arch_file: Path) -> None:
    import onnxruntime

    path = export_model(small_arch_file, format="onnx")
    assert path.name == "t.onnx"
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.onnx", "t.yaml"]  # one file
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = nas.build_model(small_arch_file).eval()
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32)
        got = session.run(None, {"images": x.numpy()})[0]
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-3, atol=1e-4)
