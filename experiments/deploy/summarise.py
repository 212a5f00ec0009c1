"""The README's tables, read from the runs' ``report.json`` files (``run.sh`` writes them).

python experiments/deploy/summarise.py
"""

from __future__ import annotations

import json
from pathlib import Path

RUNS = Path(__file__).resolve().parent / "runs"


def report(name: str) -> dict:
    return json.loads((RUNS / name / "report.json").read_text())


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def trained() -> None:
    print(
        "| network | params | MACs (M) | epochs | fp32 % | ONNX fp32 % | int8 % | latency ms | relative | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("effnet_winner", "nb201_teacher", "nb201_small"):
        r = report(name)
        m, lat = r["model"], r["model"]["latency"]
        print(
            f"| {name} | {m['params']:,} | {m['macs'] / 1e6:.2f} | {r['epochs']['train']} | "
            f"{pct(m['accuracy'])} | {pct(m['onnx_accuracy'])} | {pct(m['int8_accuracy'])} | "
            f"{lat['median_ms']:.2f} | {lat['relative']:.3f} | {r['seconds']:.0f} |"
        )


def distillation() -> None:
    print("\n| seed | without teacher % | with teacher % | teacher % |")
    print("|---:|---:|---:|---:|")
    plain = {0: report("nb201_small"), 1: report("small_seed1")}
    for seed in (0, 1):
        kd = report(f"small_kd_seed{seed}")
        print(
            f"| {seed} | {pct(plain[seed]['model']['accuracy'])} | {pct(kd['model']['accuracy'])} "
            f"| {pct(kd['distillation']['teacher_accuracy'])} |"
        )


def pruning() -> None:
    print(
        "\n| method | amount | accuracy % dense / pruned / fine-tuned | non-zero params "
        "| zero channels | eager ms dense / pruned | ONNX Runtime ms dense / pruned |"
    )
    print("|---|---:|---|---:|---:|---|---|")
    for method in ("unstructured", "structured"):
        for amount in ("0.3", "0.5", "0.7"):
            r = report(f"prune_{method}_{amount}")
            p, m = r["pruning"], r["model"]
            d = p["dense"]
            eager = [f["latency_by_backend"]["torch"]["median_ms"] for f in (d, m)]
            ort = [f["latency_by_backend"]["onnxruntime"]["median_ms"] for f in (d, m)]
            print(
                f"| {method} | {amount} | {pct(d['accuracy'])} / "
                f"{pct(p['accuracy_before_finetune'])} / {pct(m['accuracy'])} | "
                f"{m['nonzero_params']:,} of {m['params']:,} | "
                f"{m['zero_conv_channels']} of {m['conv_channels']} | "
                f"{eager[0]:.3f} / {eager[1]:.3f} | {ort[0]:.3f} / {ort[1]:.3f} |"
            )


if __name__ == "__main__":
    trained()
    distillation()
    pruning()
