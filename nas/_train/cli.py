"""``python -m nas train ARCH.yaml [HYDRA OVERRIDES]``: a Hydra app on ``conf/train.yaml``.

Bad input is reported in one line (through the caller's ``fail``) before Hydra starts, so a
failed command writes nothing into a run directory, not even Hydra's ``.hydra/`` files.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

Fail = Callable[[str, BaseException], int]


def arch_override(argv: Sequence[str]) -> list[str]:
    """The arguments with the positional ``ARCH.yaml`` turned into the ``train.arch`` override.

    Raises:
        ValueError: more than one positional argument.

    Example:
        >>> arch_override(["runs/a.yaml", "train.epochs=2"])
        ["train.arch='runs/a.yaml'", 'train.epochs=2']
    """
    positional = [a for a in argv if "=" not in a and not a.startswith("-")]
    if len(positional) > 1:
        raise ValueError(
            f"one architecture file expected, got {len(positional)}: {' '.join(positional)}"
        )
    rest = [a for a in argv if a not in positional]
    if not positional:
        return rest
    # Quoted, so that Hydra's override grammar takes any path as one string.
    escaped = positional[0].replace("\\", "\\\\").replace("'", "\\'")
    return [f"train.arch='{escaped}'", *rest]


def _preflight(overrides: list[str]) -> None:
    """Compose the config and check every input as the run will, writing nothing.

    Raises:
        ValueError: bad overrides, a bad input (named), or an unwritable run directory.
    """
    from hydra.errors import HydraException, MissingConfigException

    from nas._train.config import compose_train
    from nas._train.run import prepare

    try:
        cfg = compose_train(overrides, return_hydra_config=True)
    except MissingConfigException as err:
        first = str(err).strip().splitlines()[0]
        options = f"; available: {', '.join(err.options)}" if err.options else ""
        raise ValueError(first + options) from None
    except HydraException as err:  # bad overrides: Hydra's first two lines
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        raise ValueError(" ".join(lines[:2])) from None
    run_dir = Path(str(cfg.hydra.run.dir))
    prepare(cfg, run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create output directory {run_dir} ({err.strerror})") from None


def train_command(argv: Sequence[str], *, fail: Fail) -> int:
    """Run ``python -m nas train``; 0 on success, 2 on bad input, 130 when interrupted."""
    import hydra

    import nas._train.config  # noqa: F401  (registers train_schema and the resolver)
    from nas._config import CONF_DIR

    try:
        overrides = arch_override(argv)
        # Hydra's own flags (--help, --cfg, -m, ...) are Hydra's to handle.
        if not any(a.startswith("-") for a in overrides):
            _preflight(overrides)
    except (ValueError, OSError, ImportError) as err:
        return fail("train", err)
    status = {"code": 0}

    def task(cfg: DictConfig) -> None:
        status["code"] = run_task(cfg, fail=fail)

    sys.argv = ["python -m nas train", *overrides]
    hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")(task)()
    return status["code"]


def run_task(cfg: DictConfig, *, fail: Fail) -> int:
    """One Hydra job: train, print the report's table, say where the files are."""
    from rich.console import Console

    from nas._train.report import summary_table
    from nas._train.run import run_train

    try:
        result = run_train(cfg)
    except KeyboardInterrupt:
        print(
            "nas train: interrupted; the last finished epoch's checkpoint is kept: "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except (ValueError, OSError, ImportError) as err:
        return fail("train", err)
    console = Console()
    console.print(summary_table(result.report))
    resumed = ""
    if result.resumed_from is not None:
        phase, epoch = result.resumed_from
        resumed = f" (resumed after {phase} epoch {epoch})"
    print(f"results in {result.run_dir}{resumed}")
    return 0
