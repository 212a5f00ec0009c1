"""Architecture files: round trips to identical modules, clear errors, nothing half-written."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

import nas
import nas._io
from nas import ArchFileError


def _arch_file(
    tmp_path: Path, space: nas.space.SearchSpace, seed: int = 0
) -> tuple[nas.Arch, Path]:
    arch = space.arch(space.random_genotype(seed), num_classes=10)
    return arch, nas.save_arch(arch, tmp_path / "archs" / "trial_0.yaml")


def _text(**changes: object) -> str:
    space = nas.space.make_space("mbconv", resolution=32, width_mult=0.25)
    data = space.arch(space.random_genotype(0), num_classes=10).to_dict()
    data.update(changes)
    return yaml.safe_dump({k: v for k, v in data.items() if v is not None}, sort_keys=False)


# --- round trips -------------------------------------------------------------------------------


def test_round_trip_gives_identical_parameters_and_outputs(
    space: nas.space.SearchSpace, tmp_path: Path
) -> None:
    arch, path = _arch_file(tmp_path, space, seed=2)
    assert nas.load_arch(path) == arch
    original = space.build(arch.genotype, num_classes=10).eval()
    rebuilt = nas.build_model(path).eval()
    assert type(rebuilt) is type(original)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in original.state_dict().items()
    }
    rebuilt.load_state_dict(original.state_dict())
    x = torch.randn(2, 3, arch.resolution, arch.resolution)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), original(x), rtol=0, atol=0)


def test_load_model_restores_weights(tmp_path: Path, make_small_space) -> None:
    space = make_small_space("mbconv")
    _, path = _arch_file(tmp_path, space)
    trained = nas.build_model(path).eval()
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    loaded = nas.load_model(path, weights=tmp_path / "w.pt").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained(x), rtol=0, atol=0)


def test_build_model_accepts_a_path_a_mapping_or_an_arch(tmp_path: Path, make_small_space) -> None:
    space = make_small_space("inception")
    arch, path = _arch_file(tmp_path, space)
    counts = {
        sum(p.numel() for p in nas.build_model(a).parameters())
        for a in (arch, arch.to_dict(), path, str(path))
    }
    assert len(counts) == 1
    with pytest.raises(TypeError, match="arch must be an Arch, a mapping or a path"):
        nas.build_model(42)


def test_arch_file_is_plain_readable_yaml(tmp_path: Path, make_small_space) -> None:
    _, path = _arch_file(tmp_path, make_small_space("compound"))
    data = yaml.safe_load(path.read_text())
    assert list(data)[:5] == ["schema_version", "space", "genotype", "resolution", "num_classes"]
    assert data["schema_version"] == 1 and data["space"] == "compound"


# --- bad files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("space: mbconv\ngenotype: {s1.kernel: [3\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping, got list"),
        (_text(schema_version=2), "schema_version 2 is not supported"),
        (_text(genotype=None), "missing key 'genotype'"),
        (_text(resolution=None), "missing key 'resolution'"),
        (_text(num_classes=0), "num_classes must be a positive integer"),
        (_text(extra=1), "unknown key 'extra'"),
        (_text(genotype=[1, 2]), "genotype must be a mapping"),
    ],
    ids=[
        "malformed",
        "list",
        "version",
        "no-genotype",
        "no-resolution",
        "classes",
        "extra",
        "geno",
    ],
)
def test_bad_arch_file_names_file_and_problem(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for load in (nas.load_arch, nas.build_model):
        with pytest.raises(ArchFileError, match=match) as err:
            load(path)
        assert str(path) in str(err.value)


def test_missing_arch_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ArchFileError, match=r"nope\.yaml: no such architecture file"):
        nas.build_model(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("genotype_change", "match"),
    [
        ({"s2.kernel": 4}, r"genotype\['s2.kernel'\] = 4 is not one of"),
        ({"s2.kernal": 3}, "genotype key 's2.kernal' is not a choice"),
    ],
)
def test_bad_genotype_in_file_names_file_and_key(
    tmp_path: Path, genotype_change: dict[str, int], match: str
) -> None:
    space = nas.space.make_space("mbconv", resolution=32, width_mult=0.25)
    data = space.arch(space.random_genotype(0), num_classes=10).to_dict()
    data["genotype"].update(genotype_change)
    path = tmp_path / "bad_genotype.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ArchFileError, match=match) as err:
        nas.build_model(path)
    assert str(path) in str(err.value)


def test_unknown_space_or_option_in_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(_text(space="mbcnov"))
    with pytest.raises(ArchFileError, match=r"a\.yaml: unknown search space 'mbcnov'"):
        nas.build_model(path)
    path.write_text(_text(space_options={"resolution": 32, "widht_mult": 0.5}))
    with pytest.raises(ArchFileError, match=r"a\.yaml: space 'mbconv' has no option 'widht_mult'"):
        nas.build_model(path)


def test_yaml_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(_text(metrics=None) + f'metrics: !!python/object/apply:os.mkdir ["{marker}"]\n')
    with pytest.raises(ArchFileError, match=r"evil\.yaml: not valid YAML"):
        nas.build_model(path)
    assert not marker.exists()


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_weights_pickling_arbitrary_objects_are_refused(tmp_path: Path, make_small_space) -> None:
    _, path = _arch_file(tmp_path, make_small_space("mbconv"))
    marker = tmp_path / "pwned"
    torch.save({"features.0.0.weight": _Evil(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ArchFileError, match=r"evil\.pt: refused or unreadable weights file"):
        nas.load_model(path, weights=tmp_path / "evil.pt")
    assert not marker.exists()


def test_weights_that_do_not_fit_are_named(tmp_path: Path, make_small_space) -> None:
    _, path = _arch_file(tmp_path, make_small_space("mbconv"))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(ArchFileError, match=r"other\.pt: does not fit"):
        nas.load_model(path, weights=tmp_path / "other.pt")
    with pytest.raises(ArchFileError, match=r"missing\.pt: no such weights file"):
        nas.load_model(path, weights=tmp_path / "missing.pt")


# --- nothing half-written ----------------------------------------------------------------------


def test_failing_dump_leaves_the_old_file_intact(tmp_path: Path, make_small_space) -> None:
    arch, path = _arch_file(tmp_path, make_small_space("mbconv"))
    before = path.read_text()
    unserialisable = replace(arch, metrics={"latency": object()})
    with pytest.raises(yaml.YAMLError):
        nas.save_arch(unserialisable, path)
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_failing_write_leaves_the_old_file_intact(
    tmp_path: Path, make_small_space, monkeypatch: pytest.MonkeyPatch
) -> None:
    arch, path = _arch_file(tmp_path, make_small_space("mbconv"))
    before = path.read_text()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nas._io.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        nas.save_arch(replace(arch, num_classes=3), path)
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_saved_arch_file_has_the_usual_permissions(tmp_path: Path, make_small_space) -> None:
    # Other users and workers on a shared file system read architecture files: the atomic
    # write must not leave mkstemp's 0600 mode behind.
    umask = os.umask(0o022)
    os.umask(umask)
    _, path = _arch_file(tmp_path, make_small_space("mbconv"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_results_json_writes_non_finite_numbers_as_null() -> None:
    from nas._io import to_json

    text = to_json({"a": float("inf"), "b": [float("nan"), 1.5], "c": {"d": -float("inf")}})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": {"d": None}}
    assert "Infinity" not in text and "NaN" not in text
