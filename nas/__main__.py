"""``python -m nas SUBCOMMAND``: search and train (Hydra apps), show, export, dashboard."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

USAGE = """usage: python -m nas SUBCOMMAND [ARGS]

subcommands:
  search [conf=PRESET] [HYDRA OVERRIDES]   run a search (presets: conf/conf/*.yaml; --help for Hydra's help)
  train ARCH.yaml [HYDRA OVERRIDES]         train a found architecture (conf/train.yaml); rerun to resume
  show RUN_DIR | ARCH.yaml                  print a run's Pareto front, or an architecture
  export ARCH.yaml --format torchscript|onnx|pt2 [--weights W] [--output FILE]
                                            write a deployable model file
  dashboard RUN_DIR | STORAGE_URL           start optuna-dashboard on a study (pip install 'nas[dashboard]')
"""


#: The last error :func:`_fail` printed (a failed multirun job names it to the sweep).
_LAST_ERROR = {"message": ""}


def _fail(command: str, err: BaseException, code: int = 2) -> int:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    print(f"nas {command}: error: {message}", file=sys.stderr)
    _LAST_ERROR["message"] = message
    return code


def _search(argv: Sequence[str]) -> int:
    import hydra
    from omegaconf import DictConfig

    from nas._config import CONF_DIR

    missing = _launcher_missing(argv)
    if missing:
        return _fail("search", ValueError(missing))
    failed = _preflight(argv)
    if failed is not None:
        return failed
    status = {"code": 0}

    def task(cfg: DictConfig) -> None:
        status["code"] = run_task(cfg)
        _fail_multirun_job(status["code"])

    sys.argv = ["python -m nas search", *argv]
    hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(task)()
    return status["code"]


def _fail_multirun_job(code: int) -> None:
    """Make a multirun job's non-zero exit status the sweep's failure.

    A job of a multirun (a Slurm job through the submitit launcher, a job of a local sweep)
    hands the launching command no exit status: its error went to its own log and the command
    exited 0. Raising makes Hydra's sweeper report the job, and the command exit 1.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import CompactHydraException
    from hydra.types import RunMode

    if not code or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    num = HydraConfig.get().job.num
    if code == 130:
        what, then = "was interrupted", "; run the same command again to resume"
    else:
        what, then = "failed", f": {_LAST_ERROR['message']}" if _LAST_ERROR["message"] else ""
    raise CompactHydraException(
        f"nas search: error: job {num} of the multirun {what} (exit status {code}){then}"
    )


def _launcher_missing(argv: Sequence[str]) -> str | None:
    """Why Hydra's submitit launcher, if one is asked for, cannot submit; ``None`` if it can.

    Without the plugin Hydra prints a page about config groups, and without Slurm's commands
    submitit raises with a traceback; one line says what to do instead.
    """
    launcher = next(
        (a.split("=", 1)[1] for a in argv if a.lstrip("+~").startswith("hydra/launcher=")), ""
    )
    if not launcher.startswith("submitit_"):
        return None
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        return f"hydra/launcher={launcher} needs the submitit launcher: pip install 'nas[slurm]'"
    if launcher != "submitit_slurm":
        return None
    import shutil
    import subprocess

    missing = [cmd for cmd in ("sbatch", "srun") if not shutil.which(cmd)]
    if missing:
        return (
            f"hydra/launcher=submitit_slurm needs Slurm's {' and '.join(missing)} on PATH "
            "(submit from a machine of the cluster, e.g. a login node)"
        )
    if not shutil.which("scontrol"):
        return None
    # sbatch would retry for 10 s, then submitit raises; scontrol retries a missing slurm.conf
    # for 60 s.
    try:
        ping = subprocess.run(
            ["scontrol", "ping"], capture_output=True, text=True, check=False, timeout=15
        )
    except subprocess.TimeoutExpired:
        return "the Slurm controller does not answer: scontrol ping gave no answer in 15 s"
    if ping.returncode != 0:
        answer = ping.stdout.strip() or ping.stderr.strip() or "scontrol ping failed"
        return f"the Slurm controller does not answer: {answer.splitlines()[0]}"
    return None


def _preflight(argv: Sequence[str]) -> int | None:
    """Compose the config and create the run directory before Hydra does, to report bad
    overrides and unwritable directories in one line (Hydra prints a traceback for the latter).

    Skipped when Hydra's own flags (--help, --cfg, -m, ...) are given: Hydra handles those.
    """
    if any(arg.startswith("-") for arg in argv):
        return None
    from hydra.errors import HydraException, MissingConfigException

    from nas._config import compose

    try:
        cfg = compose(list(argv), return_hydra_config=True)
    except MissingConfigException as err:
        first = str(err).strip().splitlines()[0]
        options = f"; available: {', '.join(err.options)}" if err.options else ""
        return _fail("search", ValueError(first + options))
    except (HydraException, ValueError) as err:  # bad overrides; keep Hydra's first two lines
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        return _fail("search", ValueError(" ".join(lines[:2])))
    run_dir = Path(str(cfg.hydra.run.dir))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return _fail(
            "search", ValueError(f"cannot create output directory {run_dir} ({err.strerror})")
        )
    return None


def run_task(cfg) -> int:
    """Run one Hydra job (a search or, with ``scaling`` set, the compound-scaling procedure)."""
    try:
        if cfg.get("scaling"):
            from nas import run_scaling

            interrupted = run_scaling(cfg).interrupted
        else:
            interrupted = _search_and_summarise(cfg)
    except (ValueError, OSError) as err:
        return _fail("search", err)
    except KeyboardInterrupt:
        # A Ctrl-C outside the trials (a second one while results are written): every write is
        # atomic and finished trials are in the study, so the same command writes them again.
        print(
            "nas search: interrupted; finished trials are saved, results files may be those of "
            "the last complete run: run the same command again to write them",
            file=sys.stderr,
        )
        return 130
    if interrupted:
        print(
            "nas search: interrupted; finished trials are saved and results written",
            file=sys.stderr,
        )
        return 130
    return 0


def _search_and_summarise(cfg) -> bool:
    from rich.console import Console

    from nas import run_search
    from nas._report.tables import front_table, summary_line

    result = run_search(cfg)
    console = Console()
    console.print(
        front_table(result.results.front, title=f"Pareto front of {cfg.search.study_name}")
    )
    console.print(f"{summary_line(result.results)}; results in {result.run_dir}")
    return result.interrupted


def _show(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas show")
    parser.add_argument("path", help="a run directory or an architecture file")
    args = parser.parse_args(argv)
    path = Path(args.path)
    try:
        if path.is_dir():
            from nas._report.show import show_run

            show_run(path)
        else:
            from nas import describe_arch

            print(describe_arch(path))
    except (ValueError, OSError) as err:
        return _fail("show", err)
    return 0


def _export(argv: Sequence[str]) -> int:
    from nas._export import EXPORT_FORMATS, export_model

    parser = argparse.ArgumentParser(prog="python -m nas export")
    parser.add_argument("arch", help="architecture file (YAML)")
    parser.add_argument("--format", choices=tuple(EXPORT_FORMATS), default="torchscript")
    parser.add_argument("--weights", default=None, help="state_dict saved with torch.save")
    parser.add_argument(
        "--output", default=None, help="output file (default: next to the arch file)"
    )
    args = parser.parse_args(argv)
    try:
        out = export_model(args.arch, format=args.format, output=args.output, weights=args.weights)
    except (ValueError, OSError, ImportError, RuntimeError) as err:
        return _fail("export", err)
    print(f"wrote {out}")
    return 0


def _dashboard(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas dashboard")
    parser.add_argument(
        "target", help="a run directory (its study.journal) or an Optuna storage URL"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    try:
        from nas._report.show import storage_of

        storage = storage_of(args.target)
        try:
            from optuna_dashboard import run_server
        except ImportError:
            raise ValueError(
                "optuna-dashboard is not installed: pip install 'nas[dashboard]'"
            ) from None
    except (ValueError, OSError) as err:
        return _fail("dashboard", err)
    print(f"optuna-dashboard on http://{args.host}:{args.port} (Ctrl-C stops)")
    run_server(storage, host=args.host, port=args.port)
    return 0


def _train(argv: Sequence[str]) -> int:
    from nas._train.cli import train_command

    return train_command(argv, fail=_fail)


COMMANDS = {
    "search": _search,
    "train": _train,
    "show": _show,
    "export": _export,
    "dashboard": _dashboard,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"nas: error: unknown subcommand {command!r}\n{USAGE}", file=sys.stderr, end="")
        return 2
    return COMMANDS[command](rest)


if __name__ == "__main__":
    sys.exit(main())
