"""Readers of the datasets ``load_data`` offers: decoded uint8 images and integer labels.

Each reader validates what it reads and raises :class:`DataError` naming the file, array or
folder at fault; none of them resizes or splits (that is :mod:`nas._data.data`'s job).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


class DataError(ValueError):
    """Data that cannot be used: a missing path, a malformed file, bad labels or options."""


@dataclass(frozen=True, eq=False)
class Decoded:
    """Decoded images at their native size: uint8 HWC arrays (one array, or one per image)."""

    x_train: np.ndarray | list[np.ndarray]
    y_train: np.ndarray
    x_test: np.ndarray | list[np.ndarray] | None
    y_test: np.ndarray | None
    classes: list[str]


def load_digits() -> Decoded:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are 0..16; scale to the 0..255 of every other dataset.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return Decoded(
        x_train=images,
        y_train=bunch.target.astype(np.int64),
        x_test=None,
        y_test=None,
        classes=[str(c) for c in bunch.target_names],
    )


def make_synthetic(*, num_classes: int, size: int, seed: int) -> Decoded:
    """Class prototypes (coarse random colour patterns) plus pixel noise, at 16x16."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.0, 1.0, size=(num_classes, 3, 4, 4)).astype(np.float32)
    protos = F.interpolate(torch.from_numpy(coarse), size=(16, 16), mode="bilinear").numpy()
    labels = np.arange(size) % num_classes
    labels = rng.permutation(labels)
    noise = rng.normal(0.0, 0.15, size=(size, 3, 16, 16)).astype(np.float32)
    images = np.clip(protos[labels] + noise, 0.0, 1.0)
    images = np.rint(images.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)
    return Decoded(
        x_train=images,
        y_train=labels.astype(np.int64),
        x_test=None,
        y_test=None,
        classes=[f"class_{i}" for i in range(num_classes)],
    )


def _check_arrays(x: np.ndarray, y: np.ndarray, *, source: str, xkey: str, ykey: str) -> np.ndarray:
    """Validate uint8 images and integer labels; return images as (N, H, W, C)."""
    if x.dtype != np.uint8:
        raise DataError(f"{source}: {xkey} must be uint8 images, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or min(x.shape[1:3]) < 1:
        raise DataError(
            f"{source}: {xkey} must have shape (N, H, W, C) with C = 1 or 3 (or (N, H, W)), "
            f"got {tuple(x.shape)}"
        )
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{source}: {ykey} must be a 1-D integer array, got shape {tuple(y.shape)} "
            f"dtype {y.dtype}"
        )
    if len(x) != len(y):
        raise DataError(f"{source}: {xkey} has {len(x)} images but {ykey} has {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{source}: {xkey} is empty")
    return x


def load_npz(path: Path, *, split: str) -> Decoded:
    if not path.is_file():
        raise DataError(f"npz data path {str(path)!r} is not a file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {str(path)!r} as an .npz file: {err}") from err
    with archive:
        needed = ["x_train", "y_train"] + (["x_test", "y_test"] if split == "test" else [])
        missing = [k for k in needed if k not in archive.files]
        if missing:
            raise DataError(
                f"{path.name}: missing array(s) {', '.join(missing)} (has: {', '.join(archive.files)})"
            )
        x_train = _check_arrays(
            archive["x_train"], archive["y_train"], source=path.name, xkey="x_train", ykey="y_train"
        )
        y_train = archive["y_train"].astype(np.int64)
        x_test = y_test = None
        if split == "test":
            x_test = _check_arrays(
                archive["x_test"], archive["y_test"], source=path.name, xkey="x_test", ykey="y_test"
            )
            y_test = archive["y_test"].astype(np.int64)
        classes = [str(c) for c in archive["classes"]] if "classes" in archive.files else []
    return Decoded(x_train, y_train, x_test, y_test, classes)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler of CIFAR-10 batches: only dicts, lists, strings and numpy arrays.

    The official batches are pickles, which may run arbitrary code when loaded; refusing every
    global but the few that a pickled numpy array needs keeps a tampered file from doing so.
    """

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch")


# numpy < 2 pickles arrays through numpy.core, numpy >= 2 through numpy._core (both import).
_PICKLE_ALLOWED = {
    *((f"{core}.multiarray", "_reconstruct") for core in ("numpy.core", "numpy._core")),
    *((f"{core}.multiarray", "scalar") for core in ("numpy.core", "numpy._core")),
    *((f"{core}.numeric", "_frombuffer") for core in ("numpy.core", "numpy._core")),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


def _read_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with file.open("rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise DataError(f"cannot read CIFAR-10 batch {str(file)!r}: {err}") from err
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR-10 batch {str(file)!r} is not a dict")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(
            f"CIFAR-10 batch {str(file)!r} lacks 'data' or 'labels' (has: {sorted(batch)})"
        )
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"CIFAR-10 batch {str(file)!r}: data must be uint8 of shape (N, 3072), "
            f"got {data.dtype} {tuple(data.shape)}"
        )
    if labels.shape != (len(data),):
        raise DataError(
            f"CIFAR-10 batch {str(file)!r}: {len(labels)} labels for {len(data)} images"
        )
    # Rows are 1024 red, then green, then blue values of a 32x32 image (row-major).
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar10(path: Path, *, split: str) -> Decoded:
    folder = (
        path
        if path.name == _CIFAR10_DIR or not (path / _CIFAR10_DIR).is_dir()
        else path / _CIFAR10_DIR
    )
    needed = _CIFAR10_FILES if split == "test" else _CIFAR10_FILES[:5]
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 files missing in {str(folder)!r}: {', '.join(missing)}; download "
            f"{_CIFAR10_URL} and extract it so that {_CIFAR10_DIR}/data_batch_1..5 and "
            f"{_CIFAR10_DIR}/test_batch lie in the data path"
        )
    parts = [_read_batch(folder / f) for f in _CIFAR10_FILES[:5]]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test = y_test = None
    if split == "test":
        x_test, y_test = _read_batch(folder / "test_batch")
    return Decoded(x_train, y_train, x_test, y_test, list(_CIFAR10_CLASSES))


def _image_files(folder: Path) -> list[Path]:
    from PIL import Image

    extensions = {e.lower() for e in Image.registered_extensions()}
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions
    )


def _read_folder(
    root: Path, classes: Sequence[str] | None = None
) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    from PIL import Image, UnidentifiedImageError

    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(
            f"image folder {str(root)!r} has no class sub-folders (expected {root}/<class>/<image>)"
        )
    if classes is not None and found != list(classes):
        raise DataError(
            f"image folder {str(root)!r} has classes {found}, expected the training classes "
            f"{list(classes)}"
        )
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, cls in enumerate(found):
        files = _image_files(root / cls)
        if not files:
            raise DataError(f"class folder {str(root / cls)!r} holds no images")
        for file in files:
            try:
                with Image.open(file) as img:
                    images.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
            except (OSError, UnidentifiedImageError) as err:
                raise DataError(f"cannot read image {str(file)!r}: {err}") from err
            labels.append(label)
    return images, np.asarray(labels, dtype=np.int64), found


def load_imagefolder(path: Path, *, split: str) -> Decoded:
    if not path.is_dir():
        raise DataError(f"imagefolder data path {str(path)!r} is not a directory")
    if split == "train":
        x, y, classes = _read_folder(path)
        return Decoded(_stack_if_uniform(x), y, None, None, classes)
    held_out = next((path / d for d in ("test", "val") if (path / d).is_dir()), None)
    if not (path / "train").is_dir() or held_out is None:
        raise DataError(
            f"split='test' needs {str(path / 'train')!r} and {str(path / 'test')!r} "
            f"(or {str(path / 'val')!r}) class folders"
        )
    x, y, classes = _read_folder(path / "train")
    xt, yt, _ = _read_folder(held_out, classes)
    return Decoded(_stack_if_uniform(x), y, _stack_if_uniform(xt), yt, classes)


def _stack_if_uniform(images: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    shapes = {img.shape for img in images}
    return np.stack(images) if len(shapes) == 1 else images
