"""Data loaders on fixtures the tests write: npz, CIFAR-10 batches, an image folder; digits, synthetic."""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import nas
from nas import DataError, load_data
from nas._data.data import DATASETS, check_resolution, clear_cache
from nas.measure import Dataset

CONF_DATA = Path(__file__).resolve().parent.parent / "conf" / "data"


def _images(n: int, size: int, seed: int, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.int64)
    return x, y


def _check(data: Dataset, *, resolution: int, n_train: int, n_val: int) -> None:
    assert data.x_train.shape == (n_train, 3, resolution, resolution)
    assert data.x_val.shape == (n_val, 3, resolution, resolution)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.y_train.shape == (n_train,) and data.y_val.shape == (n_val,)
    assert int(data.y_train.max()) < data.num_classes and int(data.y_train.min()) >= 0
    # Normalised per channel with the training images' statistics.
    torch.testing.assert_close(data.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(data.x_train.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)


@pytest.fixture
def npz_file(tmp_path: Path) -> Path:
    x, y = _images(60, 12, seed=1)
    xt, yt = _images(30, 12, seed=2)
    path = tmp_path / "toy.npz"
    np.savez(
        path,
        x_train=x,
        y_train=y.astype(np.uint8),
        x_test=xt,
        y_test=yt,
        classes=[f"c{i}" for i in range(10)],
    )
    return path


def _write_cifar(
    root: Path, *, per_batch: int = 10, str_keys: bool = False, skip: tuple[str, ...] = ()
) -> Path:
    """The official layout: cifar-10-batches-py/data_batch_1..5, test_batch (protocol-2 pickles)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        if name in skip:
            continue
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        # A known pixel: image 0 of batch i has red = i at (0, 0) and blue = 200 at (31, 31).
        data[0, 0] = i
        data[0, 2 * 1024 + 1023] = 200
        labels = [(j + i) % 10 for j in range(per_batch)]
        batch = {"batch_label": f"batch {i}", "labels": labels, "data": data, "filenames": []}
        if not str_keys:
            batch = {k.encode(): v for k, v in batch.items()}
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


def _write_imagefolder(
    root: Path, *, sizes: tuple[int, ...] = (10, 14), per_class: int = 4
) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, cls in enumerate(["cat", "dog", "fish"]):
        (root / cls).mkdir(parents=True)
        for j in range(per_class):
            size = sizes[j % len(sizes)]
            arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            mode = "L" if (c, j) == (0, 0) else "RGB"
            img = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode=mode)
            img.save(root / cls / f"{j}.png")
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_digits_default_loads_embedded_data() -> None:
    data = load_data(name="digits", resolution=16)
    _check(data, resolution=16, n_train=1797 - 359, n_val=359)
    assert data.classes == [str(i) for i in range(10)]
    # Grayscale repeated to three identical channels.
    torch.testing.assert_close(data.x_train[:, 0], data.x_train[:, 2])


def test_resize_shapes_and_cache_reuse() -> None:
    a = load_data(name="digits", resolution=24)
    assert load_data(name="digits", resolution=24) is a
    b = load_data(name="digits", resolution=40)
    assert b.x_train.shape[-2:] == (40, 40) and a.x_train.shape[-2:] == (24, 24)
    assert torch.equal(a.y_train, b.y_train)


def test_seeded_split_is_deterministic_and_stratified() -> None:
    clear_cache()
    a = load_data(name="digits", resolution=8, seed=3)
    clear_cache()
    b = load_data(name="digits", resolution=8, seed=3)
    c = load_data(name="digits", resolution=8, seed=4)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_val, c.x_val)
    counts = torch.bincount(a.y_val, minlength=10)
    assert int(counts.max() - counts.min()) <= 2  # each class's share kept
    sub = load_data(name="digits", resolution=8, seed=3, train_size=100, val_size=50)
    assert len(sub.y_train) == 100 and len(sub.y_val) == 50
    assert torch.bincount(sub.y_train, minlength=10).tolist() == [10] * 10


def test_npz_split_from_train_and_test(npz_file: Path) -> None:
    data = load_data(name="npz", path=str(npz_file), resolution=8, val_fraction=0.25)
    _check(data, resolution=8, n_train=45, n_val=15)
    assert data.classes[:2] == ["c0", "c1"]
    held_out = load_data(name="npz", path=str(npz_file), resolution=16, split="test")
    _check(held_out, resolution=16, n_train=60, n_val=30)
    # Upscaling 12 -> 16 keeps the images' content: validation pixels follow x_test's.
    xt = np.load(npz_file)["x_test"].astype(np.float32)
    raw_mean = xt.mean(axis=(1, 2, 3))
    seen_mean = held_out.x_val.mean(dim=(1, 2, 3)).numpy()
    assert np.corrcoef(raw_mean, seen_mean)[0, 1] > 0.99


def test_npz_grayscale_hw_arrays(tmp_path: Path) -> None:
    x, y = _images(40, 8, seed=0, channels=1)
    np.savez(tmp_path / "g.npz", x_train=x[..., 0], y_train=y)
    data = load_data(name="npz", path=str(tmp_path / "g.npz"), resolution=8)
    _check(data, resolution=8, n_train=32, n_val=8)
    assert data.classes == [str(i) for i in range(10)]


@pytest.mark.parametrize("str_keys", [False, True])
def test_cifar10_official_batch_layout(tmp_path: Path, str_keys: bool) -> None:
    _write_cifar(tmp_path, str_keys=str_keys)
    data = load_data(name="cifar10", path=str(tmp_path), resolution=32, split="test")
    assert data.classes[0] == "airplane" and data.num_classes == 10
    assert len(data.y_train) == 50 and len(data.y_val) == 10
    # Rows are R, G, B planes of a row-major 32x32 image: check the known pixels landed.
    raw = (
        data.x_train * torch.tensor(data.std)[:, None, None]
        + torch.tensor(data.mean)[:, None, None]
    )
    for i in range(5):
        assert round(float(raw[10 * i, 0, 0, 0]) * 255) == i
        assert round(float(raw[10 * i, 2, 31, 31]) * 255) == 200
    # The cifar-10-batches-py folder itself is accepted as the path too.
    again = load_data(name="cifar10", path=str(tmp_path / "cifar-10-batches-py"), resolution=8)
    _check(again, resolution=8, n_train=40, n_val=10)


def test_cifar10_missing_files_named_in_one_line(tmp_path: Path) -> None:
    _write_cifar(tmp_path, skip=("data_batch_3", "test_batch"))
    with pytest.raises(DataError) as err:
        load_data(name="cifar10", path=str(tmp_path), resolution=32, split="test")
    message = str(err.value)
    assert "\n" not in message
    assert (
        "data_batch_3" in message
        and "test_batch" in message
        and "data_batch_1" not in message.split(";")[0]
    )
    assert "cifar-10-python.tar.gz" in message


def test_cifar10_refuses_pickled_code(tmp_path: Path) -> None:
    folder = _write_cifar(tmp_path)

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    with (folder / "data_batch_2").open("wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f, protocol=2)
    with pytest.raises(DataError, match=r"refusing to load (__builtin__|builtins)\.print"):
        load_data(name="cifar10", path=str(tmp_path), resolution=8)


def test_imagefolder_mixed_sizes_and_modes(tmp_path: Path) -> None:
    root = _write_imagefolder(tmp_path / "imgs")
    data = load_data(
        name="imagefolder", path=str(root), resolution=12, num_classes=3, val_fraction=0.25
    )
    _check(data, resolution=12, n_train=9, n_val=3)
    assert data.classes == ["cat", "dog", "fish"]


def test_imagefolder_train_test_folders(tmp_path: Path) -> None:
    _write_imagefolder(tmp_path / "train")
    _write_imagefolder(tmp_path / "val", per_class=2)
    data = load_data(
        name="imagefolder", path=str(tmp_path), resolution=8, num_classes=3, split="test"
    )
    _check(data, resolution=8, n_train=12, n_val=6)


def test_synthetic_is_seeded_and_sized() -> None:
    a = load_data(name="synthetic", resolution=16, synthetic_size=100, seed=1)
    b = load_data(name="synthetic", resolution=16, synthetic_size=100, seed=2)
    _check(a, resolution=16, n_train=80, n_val=20)
    assert not torch.equal(a.x_train, b.x_train)
    assert load_data(name="synthetic", resolution=16, synthetic_size=100, seed=1) is a


def test_check_resolution_names_both_numbers() -> None:
    space = nas.space.make_space("mbconv", resolution=32, width_mult=0.25)
    model = space.build(space.random_genotype(0), num_classes=10)
    check_resolution(model, 32)
    with pytest.raises(DataError, match=r"resolution 16 .*total stride 32"):
        check_resolution(model, 16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "mnist"}, r"unknown dataset name 'mnist'; known: digits, npz, cifar10"),
        ({"name": "npz"}, r"dataset 'npz' needs a path"),
        (
            {"name": "npz", "path": "/no/such/file.npz"},
            r"data path '/no/such/file.npz'.*does not exist",
        ),
        ({"name": "cifar10", "path": "/no/such/dir"}, r"does not exist"),
        ({"val_fraction": 0.0}, r"val_fraction must be in \(0, 1\), got 0.0"),
        ({"val_fraction": 1.5}, r"val_fraction must be in \(0, 1\)"),
        ({"split": "val"}, r"split must be one of \['train', 'test'\], got 'val'"),
        ({"split": "test"}, r"dataset 'digits' has no test split"),
        ({"num_classes": 5}, r"dataset 'digits' has 10 classes but num_classes=5"),
        ({"resolution": 0}, r"resolution must be an integer >= 1, got 0"),
        ({"train_size": 0}, r"train_size must be an integer >= 1"),
        (
            {"name": "synthetic", "synthetic_size": 5},
            r"synthetic_size must be an integer >= 20, got 5",
        ),
    ],
)
def test_bad_options_raise_one_clear_error(kwargs: dict[str, object], match: str) -> None:
    kwargs = {"resolution": 8, **kwargs}
    with pytest.raises(DataError, match=match):
        load_data(**kwargs)  # type: ignore[arg-type]


def test_bad_npz_content(tmp_path: Path) -> None:
    x, y = _images(20, 8, seed=0)
    cases = {
        "keys.npz": ({"x_train": x, "labels": y}, r"missing array\(s\) y_train"),
        "shape.npz": (
            {"x_train": x.reshape(20, -1), "y_train": y},
            r"x_train must have shape \(N, H, W, C\).*got \(20, 192\)",
        ),
        "channels.npz": (
            {"x_train": np.zeros((20, 8, 8, 4), np.uint8), "y_train": y},
            r"C = 1 or 3.*got \(20, 8, 8, 4\)",
        ),
        "dtype.npz": (
            {"x_train": x.astype(np.float32), "y_train": y},
            r"x_train must be uint8.*float32",
        ),
        "length.npz": (
            {"x_train": x, "y_train": y[:10]},
            r"x_train has 20 images but y_train has 10 labels",
        ),
        "labels.npz": (
            {"x_train": x, "y_train": y + 5},
            r"labels y_train must lie in \[0, 10\).*from 5 to 14",
        ),
        "negative.npz": (
            {"x_train": x, "y_train": y - 1},
            r"labels y_train must lie in \[0, 10\).*from -1 to 8",
        ),
    }
    for file, (arrays, match) in cases.items():
        np.savez(tmp_path / file, **arrays)
        with pytest.raises(DataError, match=match):
            load_data(name="npz", path=str(tmp_path / file), resolution=8)
    np.savez(tmp_path / "notest.npz", x_train=x, y_train=y)
    with pytest.raises(DataError, match=r"missing array\(s\) x_test, y_test"):
        load_data(name="npz", path=str(tmp_path / "notest.npz"), resolution=8, split="test")


def test_bad_imagefolder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no class sub-folders"):
        load_data(name="imagefolder", path=str(tmp_path / "empty"), resolution=8)
    (tmp_path / "empty" / "a").mkdir()
    with pytest.raises(DataError, match=r"class folder .*a' holds no images"):
        load_data(name="imagefolder", path=str(tmp_path / "empty"), resolution=8)


def test_every_data_config_matches_load_data_keywords() -> None:
    params = set(inspect.signature(load_data).parameters) - {"resolution"}
    files = sorted(CONF_DATA.glob("*.yaml"))
    assert {f.stem for f in files} >= {"digits", "synthetic", "npz", "cifar10", "imagefolder"}
    for file in files:
        cfg = yaml.safe_load(file.read_text())
        assert set(cfg) == params | {"name"}, file.name
        assert cfg["name"] in DATASETS
    synthetic = yaml.safe_load((CONF_DATA / "synthetic.yaml").read_text())
    assert len(load_data(**synthetic, resolution=8).classes) == synthetic["num_classes"]
