"""A reparameterised network: fused equals unfused, its latency fused and unfused, its ONNX graph.

EfficientNet-B0's genotype in the MBConv space with ``rep: [true]`` (every depthwise conv a
MobileOne block: kxk, 1x1 and BN-identity branches) at 160 px, 1000 classes. BatchNorm
statistics come from training-mode passes over noise and the affine parameters are random, as
training leaves them (freshly initialised BNs would make the fold trivially exact).

1. Fused against unfused on random inputs: the largest absolute and relative difference.
2. Latency of the unfused network, the fused one and plain B0 (no rep) in the same rounds
   (``fused=False``, so each is timed as given), in eager PyTorch and in ONNX Runtime.
3. The ONNX graphs: operator counts of the unfused export and of ``nas.export_model``'s file.

Run from the repository root:
    flock /tmp/nas-cpu.lock python experiments/latency/rep_fused.py \
        > experiments/latency/results/rep_fused.log 2>&1
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import onnx
import torch
import yaml
from torch import nn

import nas
from nas.layers import RepConvBNAct, reparameterize
from nas.space import make_space
from search_spaces.mbconv import B0_GENOTYPE

ROOT = Path(__file__).resolve().parents[2]
RES = 160


def trained_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorm statistics of 8 training-mode passes over noise, random affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
            m.weight.copy_(0.5 + torch.rand(m.num_features, generator=gen))
            m.bias.copy_(0.2 * torch.randn(m.num_features, generator=gen))
        model.train()
        for _ in range(8):
            model(torch.randn(4, 3, RES, RES, generator=gen))
    return model.eval()


def onnx_ops(model: nn.Module) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        path = Path(tmp) / "m.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, 3, RES, RES),), str(path), dynamo=True)
        return dict(Counter(n.op_type for n in onnx.load(str(path)).graph.node))


def main() -> None:
    torch.set_num_threads(1)
    space = make_space("mbconv", resolution=RES, rep=[True])
    plain_space = make_space("mbconv", resolution=RES)
    torch.manual_seed(0)
    unfused = trained_norms(space.build(B0_GENOTYPE, num_classes=1000))
    fused = reparameterize(copy.deepcopy(unfused))
    torch.manual_seed(0)
    plain = plain_space.build(B0_GENOTYPE, num_classes=1000).eval()
    blocks = sum(isinstance(m, RepConvBNAct) for m in unfused.modules())

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, RES, RES, generator=gen)
    with torch.inference_mode():
        a, b = unfused(x), fused(x)
    diff = (a - b).abs()
    equality = {
        "max_abs_diff": float(diff.max()),
        "max_abs_diff_over_max_abs_output": float(diff.max() / a.abs().max()),
        "output_abs_max": float(a.abs().max()),
        "within_1e-5": bool(diff.max() <= 1e-5),
    }
    print(f"rep blocks: {blocks}; fused vs unfused: {equality}", flush=True)

    cfg = yaml.safe_load((ROOT / "conf/latency/cpu.yaml").read_text())
    latency = {}
    for backend in ("torch", "onnxruntime"):
        results = nas.measure_latencies(
            [unfused, fused, plain],
            resolution=RES,
            **{**cfg, "backend": backend, "fused": False, "max_seconds": 3.0},
        )
        load = [round(v, 2) for v in os.getloadavg()]
        latency[backend] = {
            name: {**r.to_dict(), "load": load}
            for name, r in zip(("unfused", "fused", "plain_b0"), results, strict=True)
        }
        u, f, p = results
        print(
            f"{backend}: unfused {u.median_ms:.2f} ms (rel {u.relative:.3f}), fused "
            f"{f.median_ms:.2f} ms (rel {f.relative:.3f}), plain B0 {p.median_ms:.2f} ms "
            f"(rel {p.relative:.3f}); unfused/fused {u.relative / f.relative:.2f}x; "
            f"rounds {f.rounds}; load {load}",
            flush=True,
        )

    with tempfile.TemporaryDirectory() as tmp:
        arch = nas.save_arch(space.arch(B0_GENOTYPE, num_classes=1000), Path(tmp) / "rep.yaml")
        weights = Path(tmp) / "w.pt"
        torch.save(unfused.state_dict(), weights)
        exported = nas.export_model(arch, format="onnx", weights=weights)  # checked in ORT
        fused_ops = dict(Counter(n.op_type for n in onnx.load(str(exported)).graph.node))
    graphs = {"unfused": onnx_ops(unfused), "nas_export": fused_ops, "plain_b0": onnx_ops(plain)}
    for name, ops in graphs.items():
        print(f"ONNX {name}: {sorted(ops.items())}", flush=True)
    params = {
        name: sum(p.numel() for p in m.parameters())
        for name, m in (("unfused", unfused), ("fused", fused), ("plain_b0", plain))
    }
    out = ROOT / "experiments/latency/results/rep_fused.json"
    out.write_text(
        json.dumps(
            {
                "network": "EfficientNet-B0 genotype, mbconv rep=[true], 160 px, 1000 classes",
                "rep_blocks": blocks,
                "params": params,
                "equality": equality,
                "latency": latency,
                "onnx_ops": graphs,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
