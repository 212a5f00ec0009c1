"""The README's tables of experiments/spaces/runs (written by run.sh) and the mixed front's plot.

For each run: its trials, wall time and Pareto front; for ``mixed``, which block family each
stage of each front member uses (M = MBConv, S = ShuffleNetV2 unit, B = ResNet basic block),
how often each family appears on the front against all evaluated networks, and
``mixed_front.png``.

    python experiments/spaces/summarize.py
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import nas

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
SPACES = ("resnet", "shufflenet_v2", "mobilenet_v1", "mixed")
CODE = {"mbconv": "M", "shuffle": "S", "basic": "B"}
COLOURS = {"M": "tab:blue", "S": "tab:orange", "B": "tab:green", "-": "tab:gray"}


def code(record: nas.TrialRecord) -> str:
    """The stages' families, e.g. ``MSBB``."""
    n = sum(1 for key in record.genotype if key.endswith(".block"))
    return "".join(CODE[record.genotype[f"s{i}.block"]] for i in range(1, n + 1))


def majority(families: str) -> str:
    (top, count), *rest = Counter(families).most_common()
    return "-" if rest and rest[0][1] == count else top


def run_table(space: str) -> list[nas.TrialRecord] | None:
    run = RUNS / space
    if not (run / "study.journal").exists():
        return None
    records = nas.load_trials(run)
    front = nas.pareto_front(records)
    states = Counter(r.state for r in records)
    distinct = [r for r in records if r.evaluated and r.duplicate_of is None]
    wall = (run / "wall_seconds").read_text().strip() if (run / "wall_seconds").exists() else "?"
    print(
        f"\n### {space}: {len(records)} trials ({dict(states)}), {len(distinct)} distinct "
        f"networks evaluated, wall {wall} s, front of {len(front)}\n"
    )
    print("| trial | accuracy % | latency ms | params | MACs (M) | architecture |")
    print("|---|---|---|---|---|---|")
    for r in front:
        print(
            f"| {r.trial} | {100 * r.accuracy:.1f} | {r.latency_ms:.3f} | {r.params:,} | "
            f"{r.macs / 1e6:.1f} | `{r.arch}` |"
        )
    return records


def mixed_families(records: list[nas.TrialRecord]) -> None:
    front = nas.pareto_front(records)
    distinct = [r for r in records if r.evaluated and r.duplicate_of is None]
    on_front = Counter("".join(code(r) for r in front))
    evaluated = Counter("".join(code(r) for r in distinct))
    print("\n| family | stages on the front | stages of all evaluated networks |")
    print("|---|---|---|")
    for name, letter in CODE.items():
        print(
            f"| {name} ({letter}) | {on_front[letter]} of {4 * len(front)} | "
            f"{evaluated[letter]} of {4 * len(distinct)} |"
        )
    print("\nFront, fastest first: " + ", ".join(f"{code(r)} (trial {r.trial})" for r in front))

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    front_ids = {r.trial for r in front}
    for r in distinct:
        colour = COLOURS[majority(code(r))]
        alpha = 1.0 if r.trial in front_ids else 0.35
        ax.scatter(
            r.latency_ms,
            100 * r.accuracy,
            color=colour,
            alpha=alpha,
            s=36,
            edgecolors="black" if r.trial in front_ids else "none",
        )
    xs = [r.latency_ms for r in front]
    ys = [100 * r.accuracy for r in front]
    ax.step(xs, ys, where="post", color="black", linewidth=1)
    for i, r in enumerate(front):  # labels alternate below and above: neighbours stay apart
        offset = (4, -11) if i % 2 == 0 else (-10, 6)
        ax.annotate(
            code(r),
            (r.latency_ms, 100 * r.accuracy),
            textcoords="offset points",
            xytext=offset,
            fontsize=8,
        )
    for letter, name in (
        ("M", "mostly MBConv"),
        ("S", "mostly shuffle"),
        ("B", "mostly basic"),
        ("-", "no majority"),
    ):
        ax.scatter([], [], color=COLOURS[letter], label=name)
    ax.set_xlabel("latency ms (batch 1, one CPU thread, this machine)")
    ax.set_ylabel("proxy accuracy % (CIFAR-10 subset, 2 epochs)")
    ax.set_title(
        f"mixed space: {len(distinct)} networks, front of {len(front)} "
        "(labels: family per stage, M/S/B)",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(HERE / "mixed_front.png", dpi=120)
    print(f"\nwrote {HERE / 'mixed_front.png'}")


def main() -> None:
    for space in SPACES:
        records = run_table(space)
        if space == "mixed" and records:
            mixed_families(records)


if __name__ == "__main__":
    main()
