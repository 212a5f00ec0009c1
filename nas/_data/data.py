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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas._data.readers import (
    DataError,
    Decoded,
    load_cifar10,
    load_digits,
    load_imagefolder,
    load_npz,
    make_synthetic,
)
from nas._models.network import total_stride

#: Names accepted by :func:`load_data`.
DATASETS: tuple[str, ...] = ("digits", "npz", "cifar10", "imagefolder", "synthetic")
SPLITS: tuple[str, ...] = ("train", "test")

# Images are resized in chunks so that a large dataset never needs a float copy of all of it at
# its native resolution at once.
_RESIZE_CHUNK = 1024


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
        >>> from nas import load_data
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
        >>> from nas.zoo import efficientnet
        >>> check_resolution(efficientnet("b0"), 32)
    """
    stride = total_stride(model)
    if resolution < stride:
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
) -> Decoded:
    if name == "digits":
        raw = load_digits()
    elif name == "synthetic":
        raw = make_synthetic(num_classes=num_classes, size=synthetic_size, seed=seed)
    elif name == "npz":
        raw = load_npz(Path(path or ""), split=split)
    elif name == "cifar10":
        raw = load_cifar10(Path(path or ""), split=split)
    else:
        raw = load_imagefolder(Path(path or ""), split=split)
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
