"""Image classification data: loaders, a seeded train/validation split, resizing, normalisation.

Every dataset is decoded once per process (:func:`functools.lru_cache` on the decoded uint8
arrays), so a search that asks for many input resolutions decodes once; each requested
resolution is resized and normalised once and kept in a small bounded cache.

Datasets (``name``):

* ``digits``: scikit-learn's 1,797 handwritten 8x8 digits, shipped with scikit-learn (no
  network); the embedded default.
* ``npz``: a ``.npz`` file with ``x_train, y_train`` (and ``x_test, y_test`` for
  ``split="test"``): uint8 images ``(N, H, W, C)`` with C = 1 or 3 (or ``(N, H, W)``
  grayscale) and integer labels ``(N,)``; an optional ``classes`` array names the classes.
* ``cifar10``: the official CIFAR-10 python-batch directory ``cifar-10-batches-py``
  (``data_batch_1`` .. ``data_batch_5``, ``test_batch``, optional ``batches.meta``); ``path``
  is that directory or its parent.
* ``imagefolder``: one sub-folder of images per class (``path/<class>/<image>``), read with
  PIL; with ``split="test"``, ``path/train/<class>/...`` and ``path/test/<class>/...`` (or
  ``path/val/<class>/...``).
* ``synthetic``: seeded random class-conditional patterns, learnable; for tests only.

Where the validation images come from (``split``):

* ``"train"`` (default): a seeded, class-stratified ``val_fraction`` of the training images;
  the test images are never touched (they stay held out for the final report).
* ``"test"``: the dataset's own test split (npz ``x_test``, CIFAR-10 ``test_batch``, the
  image folder's ``test``/``val`` folder); ``val_fraction`` is then unused.

``train_size`` and ``val_size`` then take seeded, class-stratified subsets of either side.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Names accepted by :func:`load_data`.
DATASETS: tuple[str, ...] = ("digits", "npz", "cifar10", "imagefolder", "synthetic")
SPLITS: tuple[str, ...] = ("train", "test")

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
# Images are resized in chunks so that a large dataset never needs a float copy of all of it at
# its native resolution at once.
_RESIZE_CHUNK = 1024


class DataError(ValueError):
    """Data that cannot be used: a missing path, a malformed file, bad labels or options."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset split into training and validation tensors at one input resolution.

    Images are float32 ``(N, 3, resolution, resolution)``, normalised per channel with the
    training images' ``mean`` and ``std`` (grayscale repeated to three channels); labels are
    int64 ``(N,)`` in ``[0, num_classes)``. Tensors are shared with :func:`load_data`'s cache:
    treat them as read-only.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    classes: list[str]
    resolution: int
    mean: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))
    std: tuple[float, float, float] = field(default=(1.0, 1.0, 1.0))

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, resolution={self.resolution}, "
            f"train={len(self.y_train)}, val={len(self.y_val)}, num_classes={self.num_classes})"
        )


@dataclass(frozen=True, eq=False)
class _Decoded:
    """Decoded images at their native size: uint8 HWC arrays (one array, or one per image)."""

    x_train: np.ndarray | list[np.ndarray]
    y_train: np.ndarray
    x_test: np.ndarray | list[np.ndarray] | None
    y_test: np.ndarray | None
    classes: list[str]


def load_data(
    *,
    name: str = "digits",
    resolution: int,
    path: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    train_size: int | None = None,
    val_size: int | None = None,
    split: str = "train",
    num_classes: int = 10,
    synthetic_size: int = 256,
) -> Dataset:
    """Load a dataset, split it, resize it to ``resolution`` and normalise it.

    Args:
        name: one of :data:`DATASETS`.
        resolution: square input resolution of the network (>= 1).
        path: file or directory of ``npz``, ``cifar10`` and ``imagefolder`` (unused otherwise).
        val_fraction: share of the training images held out for validation, in (0, 1), when
            ``split="train"``.
        seed: seed of the split, of the subsets and of the ``synthetic`` images.
        train_size: keep a seeded, class-stratified subset of this many training images.
        val_size: keep a seeded, class-stratified subset of this many validation images.
        split: ``"train"`` (validation drawn from the training images) or ``"test"``
            (validation is the dataset's test split).
        num_classes: number of classes; labels must lie in ``[0, num_classes)``. Fixed at 10 by
            ``digits`` and ``cifar10``; the number of class folders of ``imagefolder``.
        synthetic_size: number of ``synthetic`` images (training and validation together).

    Returns:
        The :class:`Dataset` (cached: the same arguments return the same object).

    Raises:
        DataError: (a ``ValueError``) naming the bad option, path, array or label.

    Example:
        >>> from nas._data import load_data
        >>> data = load_data(name="digits", resolution=16)
        >>> tuple(data.x_train.shape[1:]), data.num_classes, len(data.y_val)
        ((3, 16, 16), 10, 359)
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset name {name!r}; known: {', '.join(DATASETS)}")
    _check_int("resolution", resolution, minimum=1)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float):
        raise DataError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    _check_int("seed", seed, minimum=0)
    if train_size is not None:
        _check_int("train_size", train_size, minimum=1)
    if val_size is not None:
        _check_int("val_size", val_size, minimum=1)
    if split not in SPLITS:
        raise DataError(f"split must be one of {list(SPLITS)}, got {split!r}")
    _check_int("num_classes", num_classes, minimum=2)
    _check_int(
        "synthetic_size", synthetic_size, minimum=2 * num_classes if name == "synthetic" else 1
    )
    if name in ("npz", "cifar10", "imagefolder"):
        if path is None or str(path) == "":
            raise DataError(f"dataset {name!r} needs a path (data.path=...), got none")
        resolved = Path(path).expanduser().resolve()
        if not resolved.exists():
            raise DataError(f"data path {str(path)!r} of dataset {name!r} does not exist")
        key_path: str | None = str(resolved)
    else:
        key_path = None
    if name in ("digits", "synthetic") and split == "test":
        raise DataError(f"dataset {name!r} has no test split; use split='train'")
    return _prepared(
        name,
        key_path,
        float(val_fraction),
        seed,
        train_size,
        val_size,
        split,
        num_classes,
        synthetic_size,
        resolution,
    )


def check_resolution(model: nn.Module, resolution: int) -> None:
    """Raise if ``resolution`` is smaller than the network's total stride.

    Models without a ``total_stride`` attribute are accepted as they are.

    Raises:
        DataError: naming the resolution and the network's total stride.

    Example:
        >>> import nas
        >>> from nas._data import check_resolution
        >>> check_resolution(nas.efficientnet("b0"), 32)
    """
    stride = getattr(model, "total_stride", None)
    if stride is not None and resolution < stride:
        raise DataError(
            f"input resolution {resolution} is smaller than the network's total stride {stride}; "
            f"use a resolution of at least {stride}"
        )


def clear_cache() -> None:
    """Forget every decoded and resized dataset of this process."""
    _prepared.cache_clear()
    _decoded.cache_clear()


def _check_int(key: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"{key} must be an integer >= {minimum}, got {value!r}")


# A CIFAR-10-sized split at 32 px is ~150 MB of float32: a handful of resolutions at most.
@functools.lru_cache(maxsize=4)
def _prepared(
    name: str,
    path: str | None,
    val_fraction: float,
    seed: int,
    train_size: int | None,
    val_size: int | None,
    split: str,
    num_classes: int,
    synthetic_size: int,
    resolution: int,
) -> Dataset:
    # Only the synthetic images depend on the seed; other datasets share one decoded copy.
    raw = _decoded(
        name, path, split, num_classes, synthetic_size, seed if name == "synthetic" else 0
    )
    rng = np.random.default_rng(seed)
    y = raw.y_train
    if split == "train":
        n_val = max(1, round(len(y) * val_fraction))
        if n_val >= len(y):
            raise DataError(
                f"val_fraction {val_fraction} leaves no training images out of {len(y)}"
            )
        val_idx = np.sort(_stratified_subset(y, n_val, rng))
        train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
        x_tr, y_tr = _take(raw.x_train, train_idx), y[train_idx]
        x_va, y_va = _take(raw.x_train, val_idx), y[val_idx]
    elif raw.x_test is not None and raw.y_test is not None:
        x_tr, y_tr, x_va, y_va = raw.x_train, y, raw.x_test, raw.y_test
    else:
        raise DataError(f"dataset {name!r} has no test split; use split='train'")
    if train_size is not None and train_size < len(y_tr):
        idx = np.sort(_stratified_subset(y_tr, train_size, rng))
        x_tr, y_tr = _take(x_tr, idx), y_tr[idx]
    if val_size is not None and val_size < len(y_va):
        idx = np.sort(_stratified_subset(y_va, val_size, rng))
        x_va, y_va = _take(x_va, idx), y_va[idx]
    xt = _resize(x_tr, resolution)
    xv = _resize(x_va, resolution)
    # Per-channel statistics of the training images as the network sees them.
    mean = xt.mean(dim=(0, 2, 3))
    std = xt.std(dim=(0, 2, 3)).clamp_min(1e-6)
    xt.sub_(mean[:, None, None]).div_(std[:, None, None])
    xv.sub_(mean[:, None, None]).div_(std[:, None, None])
    return Dataset(
        name=name,
        x_train=xt,
        y_train=torch.from_numpy(y_tr.astype(np.int64)),
        x_val=xv,
        y_val=torch.from_numpy(y_va.astype(np.int64)),
        num_classes=num_classes,
        classes=list(raw.classes),
        resolution=resolution,
        mean=tuple(float(v) for v in mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in std),  # type: ignore[arg-type]
    )


def _stratified_subset(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` items with each class's share kept (largest remainders), seeded."""
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * n / len(y)
    take = np.floor(exact).astype(int)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: n - take.sum()]] += 1
    picked = [
        rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take, strict=True)
    ]
    return np.concatenate(picked)


def _take(x: np.ndarray | list[np.ndarray], idx: np.ndarray) -> np.ndarray | list[np.ndarray]:
    return x[idx] if isinstance(x, np.ndarray) else [x[i] for i in idx]


def _resize(images: np.ndarray | list[np.ndarray], resolution: int) -> torch.Tensor:
    """uint8 HWC images -> float32 (N, 3, R, R) in [0, 1], bilinear (antialiased when shrinking)."""
    if isinstance(images, np.ndarray):
        groups = [(np.arange(len(images)), images)]
    else:
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            by_shape.setdefault(img.shape, []).append(i)
        groups = [(np.array(ix), np.stack([images[i] for i in ix])) for ix in by_shape.values()]
    out = torch.empty((len(images), 3, resolution, resolution), dtype=torch.float32)
    for index, group in groups:
        for start in range(0, len(group), _RESIZE_CHUNK):
            chunk = torch.from_numpy(np.ascontiguousarray(group[start : start + _RESIZE_CHUNK]))
            chunk = chunk.permute(0, 3, 1, 2).float().div_(255.0)
            if chunk.shape[1] == 1:
                chunk = chunk.expand(-1, 3, -1, -1)
            h, w = chunk.shape[-2:]
            if (h, w) != (resolution, resolution):
                chunk = F.interpolate(
                    chunk,
                    size=(resolution, resolution),
                    mode="bilinear",
                    align_corners=False,
                    antialias=resolution < max(h, w),
                )
            out[torch.from_numpy(index[start : start + _RESIZE_CHUNK])] = chunk
    return out


@functools.lru_cache(maxsize=4)
def _decoded(
    name: str, path: str | None, split: str, num_classes: int, synthetic_size: int, seed: int
) -> _Decoded:
    if name == "digits":
        raw = _load_digits()
    elif name == "synthetic":
        raw = _make_synthetic(num_classes=num_classes, size=synthetic_size, seed=seed)
    elif name == "npz":
        raw = _load_npz(Path(path or ""), split=split)
    elif name == "cifar10":
        raw = _load_cifar10(Path(path or ""), split=split)
    else:
        raw = _load_imagefolder(Path(path or ""), split=split)
    fixed = {"digits": 10, "cifar10": 10, "imagefolder": len(raw.classes)}.get(name)
    if fixed is not None and fixed != num_classes:
        raise DataError(
            f"dataset {name!r} has {fixed} classes but num_classes={num_classes}; "
            f"set data.num_classes={fixed}"
        )
    for key, labels in (("y_train", raw.y_train), ("y_test", raw.y_test)):
        if labels is None or len(labels) == 0:
            continue
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise DataError(
                f"{name} labels {key} must lie in [0, {num_classes}) (num_classes={num_classes}), "
                f"found values from {lo} to {hi}"
            )
    if not raw.classes:
        raw = replace(raw, classes=[str(c) for c in range(num_classes)])
    if len(raw.classes) != num_classes:
        raise DataError(f"{name}: {len(raw.classes)} class names for num_classes={num_classes}")
    return raw


def _load_digits() -> _Decoded:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are 0..16; scale to the 0..255 of every other dataset.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return _Decoded(
        x_train=images,
        y_train=bunch.target.astype(np.int64),
        x_test=None,
        y_test=None,
        classes=[str(c) for c in bunch.target_names],
    )


def _make_synthetic(*, num_classes: int, size: int, seed: int) -> _Decoded:
    """Class prototypes (coarse random colour patterns) plus pixel noise, at 16x16."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.0, 1.0, size=(num_classes, 3, 4, 4)).astype(np.float32)
    protos = F.interpolate(torch.from_numpy(coarse), size=(16, 16), mode="bilinear").numpy()
    labels = np.arange(size) % num_classes
    labels = rng.permutation(labels)
    noise = rng.normal(0.0, 0.15, size=(size, 3, 16, 16)).astype(np.float32)
    images = np.clip(protos[labels] + noise, 0.0, 1.0)
    images = np.rint(images.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)
    return _Decoded(
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


def _load_npz(path: Path, *, split: str) -> _Decoded:
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
    return _Decoded(x_train, y_train, x_test, y_test, classes)


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


def _load_cifar10(path: Path, *, split: str) -> _Decoded:
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
    return _Decoded(x_train, y_train, x_test, y_test, list(_CIFAR10_CLASSES))


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


def _load_imagefolder(path: Path, *, split: str) -> _Decoded:
    if not path.is_dir():
        raise DataError(f"imagefolder data path {str(path)!r} is not a directory")
    if split == "train":
        x, y, classes = _read_folder(path)
        return _Decoded(_stack_if_uniform(x), y, None, None, classes)
    held_out = next((path / d for d in ("test", "val") if (path / d).is_dir()), None)
    if not (path / "train").is_dir() or held_out is None:
        raise DataError(
            f"split='test' needs {str(path / 'train')!r} and {str(path / 'test')!r} "
            f"(or {str(path / 'val')!r}) class folders"
        )
    x, y, classes = _read_folder(path / "train")
    xt, yt, _ = _read_folder(held_out, classes)
    return _Decoded(_stack_if_uniform(x), y, _stack_if_uniform(xt), yt, classes)


def _stack_if_uniform(images: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    shapes = {img.shape for img in images}
    return np.stack(images) if len(shapes) == 1 else images
