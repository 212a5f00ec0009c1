"""Tables and plots of ``bench.py``'s runs: evaluations (and epochs) to 95% and 99% of the truth.

    python experiments/search_efficiency/summary.py experiments/search_efficiency/results/*.jsonl

For each benchmark, device and sampler: the median (over seeds) number of distinct evaluations
after which the found front's hypervolume reaches 95% and 99% of the true front's (">N" when
the median run did not within N), the median ratio after 100, 300 and 1,000, and the asks per
distinct network (the duplicates a sampler proposes cost nothing but a trial), and the median
number of distinct networks a run had found when it stopped (1,000, or fewer when it hit its
cap on asks; such a run keeps its last ratio in the medians and plots). With early
stopping, the same in epochs of training (a network stopped after the 12-epoch value costs 12,
one trained in full 200). Writes ``<bench>_<device>.png`` (median and interquartile band per
sampler against distinct evaluations) and ``<bench>_<device>_early_stop.png`` (against epochs)
into the results folder, and prints the tables as Markdown.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

TARGETS = (0.95, 0.99)


def first_reach(curve: list[float], xs: list[float], target: float) -> float:
    """The first x at which the curve reaches the target (infinity if it never does)."""
    return next((x for r, x in zip(curve, xs, strict=False) if r >= target), float("inf"))


def median_reach(runs: list[dict[str, Any]], target: float, x: str, figure: str) -> float:
    hits = [first_reach(r["ratio"][figure], xs(r, x), target) for r in runs]
    return float(np.median(hits))


def xs(run: dict[str, Any], x: str) -> list[float]:
    if x == "evals":
        return [run["every"] * (i + 1) for i in range(len(run["ratio"]["headline"]))]
    return run[x]


def fmt(value: float, limit: float) -> str:
    return f"{value:,.0f}" if np.isfinite(value) else f">{limit:,.0f}"


def load(paths: list[str]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line:
                r = json.loads(line)
                if r.get("duplicates") == "same":  # the old way: a duplicate told its values again
                    r["sampler"] += " (duplicates told again)"
                if r.get("screen"):
                    r["sampler"] += f" + screen {r['screen']:g}"
                groups[(r.get("bench", "nb201"), r["device"])].append(r)
    return groups


def by_sampler(runs: list[dict[str, Any]], early_stop: bool) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        if r.get("early_stop", False) == early_stop:
            out[r["sampler"]].append(r)
    return out


def curves(runs: list[dict[str, Any]], figure: str) -> np.ndarray:
    """The runs' ratios, a run that stopped short (its cap on asks) held at its last value."""
    n = max(len(r["ratio"][figure]) for r in runs)
    return np.array([c + c[-1:] * (n - len(c)) for c in (r["ratio"][figure] for r in runs)])


def table(groups: dict[tuple[str, str], list[dict[str, Any]]], figure: str) -> list[str]:
    lines = [
        "| benchmark | device | sampler | seeds | evals to 95% | evals to 99% | ratio @100 | @300 "
        "| @1000 | asks per distinct | distinct at the end |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (bench, device), runs in groups.items():
        for name, mine in by_sampler(runs, False).items():
            c = curves(mine, figure)
            n = c.shape[1] * mine[0]["every"]
            med = np.median(c, axis=0)
            reach = [fmt(median_reach(mine, t, "evals", figure), n) for t in TARGETS]
            at = [
                f"{med[k // 10 - 1]:.3f}" if k // 10 <= len(med) else "-" for k in (100, 300, 1000)
            ]
            asks = np.median([r["trials"] / r["distinct"] for r in mine])
            end = np.median([r["distinct"] for r in mine])
            lines.append(
                f"| {bench} | {device} | {name} | {len(mine)} | {' | '.join(reach)} | "
                f"{' | '.join(at)} | {asks:.1f} | {end:,.0f} |"
            )
    return lines


#: The preset's proxy training, measured: median CPU-seconds a network over the 30 networks of
#: experiments/proxy_ground_truth (nb201-deep16: conf=nb201_proxy evaluator=proxy_cifar
#: space.channels=8 space.resolution=16; macro-tuned: conf=nas_bench_macro_proxy's).
PROXY_RUNS = {"nb201": "nb201-deep16.jsonl", "macro": "macro-tuned.jsonl"}
GROUND_TRUTH = Path(__file__).resolve().parents[1] / "proxy_ground_truth" / "results"


def training_seconds(bench: str) -> float:
    rows = (GROUND_TRUTH / PROXY_RUNS[bench]).read_text().splitlines()
    return float(np.median([json.loads(line)["cpu_seconds"] for line in rows if line]))


def paid(run: dict[str, Any], train_s: float) -> tuple[list[float], list[float]]:
    """Trained networks and CPU-hours paid at each checkpoint: the scores' measured seconds
    and each trained network at the proxy's measured median (runs before the screen existed
    trained every distinct network and computed no score)."""
    every = run["every"]
    n = len(run["ratio"]["headline"])
    trained = run.get("trained_at") or [every * (i + 1) for i in range(n)]
    scores = run.get("score_seconds_at") or [0.0] * n
    return [float(t) for t in trained], [
        (s + t * train_s) / 3600 for s, t in zip(scores, trained, strict=True)
    ]


def paid_table(groups: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    lines = [
        "| benchmark | device | sampler | seeds | trained to 95% | trained to 99% | "
        "CPU-h to 95% | CPU-h to 99% | distinct to 95% | trained / distinct |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (bench, device), runs in groups.items():
        train_s = training_seconds(bench)
        for name, mine in by_sampler(runs, False).items():
            cells = []
            for t in TARGETS:
                hits = [first_reach(r["ratio"]["headline"], paid(r, train_s)[0], t) for r in mine]
                cells.append(
                    fmt(float(np.median(hits)), max(r.get("trained", r["distinct"]) for r in mine))
                )
            for t in TARGETS:
                hits = [first_reach(r["ratio"]["headline"], paid(r, train_s)[1], t) for r in mine]
                h = float(np.median(hits))
                cells.append(f"{h:.1f}" if np.isfinite(h) else ">end")
            distinct = fmt(median_reach(mine, 0.95, "evals", "headline"), 1000)
            share = np.median([r.get("trained", r["distinct"]) / r["distinct"] for r in mine])
            lines.append(
                f"| {bench} | {device} | {name} | {len(mine)} | {' | '.join(cells)} | "
                f"{distinct} | {share:.2f} |"
            )
    return lines


def early_stop_table(groups: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    lines = [
        "| benchmark | device | sampler | seeds | epochs to 95%, off | on | ratio | epochs to 99%, "
        "off | on | ratio | stopped (on) | final ratio off | on |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (bench, device), runs in groups.items():
        on = by_sampler(runs, True)
        off = by_sampler(runs, False)
        for name in on:
            if name not in off:
                continue
            # The same seeds on both sides (early stopping may have run fewer).
            seeds = {r["seed"] for r in off[name]} & {r["seed"] for r in on[name]}
            a = [r for r in off[name] if r["seed"] in seeds]
            b = [r for r in on[name] if r["seed"] in seeds]
            cells = []
            for t in TARGETS:
                e_off = median_reach(a, t, "epochs", "headline")
                e_on = median_reach(b, t, "epochs", "headline")
                ratio = e_off / e_on if np.isfinite(e_off) and np.isfinite(e_on) else float("nan")
                limit = max(r["epochs"][-1] for r in a + b)
                cells += [fmt(e_off, limit), fmt(e_on, limit), f"{ratio:.2f}"]
            stopped = np.median([r["stopped"] / r["distinct"] for r in b])
            final = [np.median([r["ratio"]["headline"][-1] for r in x]) for x in (a, b)]
            lines.append(
                f"| {bench} | {device} | {name} | {min(len(a), len(b))} | {' | '.join(cells)} | "
                f"{100 * stopped:.0f}% | {final[0]:.3f} | {final[1]:.3f} |"
            )
    return lines


def plot(bench: str, device: str, runs: list[dict[str, Any]], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, mine in sorted(by_sampler(runs, False).items()):
        c = curves(mine, "headline")
        x = mine[0]["every"] * np.arange(1, c.shape[1] + 1)
        lo, med, hi = np.percentile(c, [25, 50, 75], axis=0)
        ax.plot(x, med, label=f"{name} ({len(mine)} seeds)")
        ax.fill_between(x, lo, hi, alpha=0.2)
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.axhline(0.99, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_ylim(0.5, 1.005)
    ax.set_xlabel("distinct networks evaluated")
    ax.set_ylabel("hypervolume / true front's")
    floor = runs[0]["floor"]
    ax.set_title(f"{bench}, {device}: accuracy floor {floor:.0f}%, median and IQR")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{bench}_{device}.png", dpi=120)
    plt.close(fig)

    on, off = by_sampler(runs, True), by_sampler(runs, False)
    if not on:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in sorted(on):
        for label, mine in ((f"{name}, stopping off", off.get(name)), (f"{name}, on", on[name])):
            if not mine:
                continue
            n = min(len(r["epochs"]) for r in mine)
            grid = np.linspace(0, min(r["epochs"][n - 1] for r in mine), 200)[1:]
            interp = np.array(
                [np.interp(grid, r["epochs"][:n], r["ratio"]["headline"][:n], left=0) for r in mine]
            )
            lo, med, hi = np.percentile(interp, [25, 50, 75], axis=0)
            ax.plot(grid, med, label=label)
            ax.fill_between(grid, lo, hi, alpha=0.2)
    ax.set_xscale("log")
    ax.set_ylim(0.5, 1.005)
    ax.set_xlabel("epochs of training spent")
    ax.set_ylabel("hypervolume / true front's")
    ax.set_title(f"{bench}, {device}: early stopping on the 12-epoch accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{bench}_{device}_early_stop.png", dpi=120)
    plt.close(fig)


def main(paths: list[str]) -> None:
    groups = load(paths)
    out = Path(paths[0]).parent
    print("Headline reference (accuracy floor, slowest network above it):\n")
    print("\n".join(table(groups, "headline")))
    print("\nThe table's worst accuracy and latency as the reference:\n")
    print("\n".join(table(groups, "table")))
    print(
        "\nWhat is paid (headline reference): trained networks, and CPU-hours with each training "
        "at the preset proxy's measured median CPU-seconds and the scores' measured seconds:\n"
    )
    print("\n".join(paid_table(groups)))
    lines = early_stop_table(groups)
    if len(lines) > 2:
        print("\nEarly stopping on the 12-epoch accuracy (headline reference), cost in epochs:\n")
        print("\n".join(lines))
    for (bench, device), runs in groups.items():
        plot(bench, device, runs, out)


if __name__ == "__main__":
    main(sys.argv[1:])
