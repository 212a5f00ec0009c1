"""MBConv space: per-stage kernel, expansion and squeeze-excite, optionally depth and width.

Every stage ``i`` (1-based, rows of the base stage table) has the choices ``s{i}.kernel``,
``s{i}.expand`` and ``s{i}.se`` (SE ratio, 0 = off); ``layers`` and ``out`` (per-stage lists)
add ``s{i}.layers`` and ``s{i}.out``; a list of activations adds ``act``; ``rep: [false, true]``
adds ``s{i}.rep``, a stage of reparameterisable blocks (MobileOne's depthwise conv: kxk, 1x1
and BN-identity branches in training, one kxk conv for inference: ``nas.layers.RepConvBNAct``).

Known points (see ``tests/test_spaces.py``):

* EfficientNet-B0, in the default space: kernels 3,3,5,3,5,5,3; expansion 1,6,6,6,6,6,6;
  SE 0.25 everywhere (``B0_GENOTYPE``).
* MobileNetV2, in the space of ``MOBILENET_V2_OPTIONS`` (out and layers choices, activation
  relu6 allowed): kernel 3, expansion 1,6,6,6,6,6,6, no SE, widths 16,24,32,64,96,160,320,
  layers 1,2,3,4,3,3,1, ReLU6 (``MOBILENET_V2_GENOTYPE``); 3,504,872 parameters at 1000
  classes, as torchvision's ``mobilenet_v2``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from torch import nn

from nas.layers import ACTIVATIONS, B0_STAGES, MBConvNet, StageConfig, round_channels, scale_stages
from nas.space import Choice, Primitive, SearchSpace, register_space, stage_lists


@register_space
class MBConvSpace(SearchSpace):
    """MBConv (MobileNetV2 / EfficientNet) networks over a base stage table.

    Args:
        resolution: input resolution.
        stages: base table rows ``(expand, kernel, stride, in, out, layers)``; default B0.
        kernel: depthwise kernel choices for every stage (3, 5, 7).
        expand: expansion-ratio choices for every stage (1, 3, 4, 6).
        se: squeeze-excite ratio choices for every stage (0 = none, 0.25 = EfficientNet's).
        layers: ``None`` (the table's) or one list of layer-count choices per stage.
        out: ``None`` (the table's) or one list of output-width choices per stage.
        activation: one activation name (fixed), or a list of them (a choice ``act``).
        rep: whether stages use reparameterisable depthwise convs: ``[false]`` (default),
            ``[true]`` (every stage) or ``[false, true]`` (a choice ``s{i}.rep`` per stage).
            Latency, export and ``nas.build_model(..., fused=True)`` use the folded form.
        width_mult: width multiplier applied to every channel count (rounded to 8).
        depth_mult: depth multiplier applied to every stage's layers (ceiling).
        stem_channels: stem width before ``width_mult``.
        head_channels: head width before ``width_mult``.
        dropout: classifier dropout.
        stochastic_depth: final block's stochastic-depth probability.

    Example:
        >>> from nas.space import make_space
        >>> space = make_space("mbconv", resolution=32)
        >>> model = space.build(space.random_genotype(0), num_classes=10)
    """

    def __init__(
        self,
        *,
        resolution: int = 224,
        stages: Sequence[Sequence[float]] = B0_STAGES,
        kernel: Sequence[int] = (3, 5, 7),
        expand: Sequence[float] = (1, 3, 4, 6),
        se: Sequence[float] = (0.0, 0.25),
        layers: Sequence[Sequence[int]] | None = None,
        out: Sequence[Sequence[int]] | None = None,
        activation: str | Sequence[str] = "silu",
        rep: Sequence[bool] = (False,),
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        stem_channels: int = 32,
        head_channels: int = 1280,
        dropout: float = 0.2,
        stochastic_depth: float = 0.2,
    ) -> None:
        super().__init__(resolution=resolution)
        self.stages = [StageConfig.from_row(r) for r in stages]
        n = len(self.stages)
        for key, values, allowed in (
            ("kernel", kernel, (3, 5, 7)),
            ("expand", expand, (1, 3, 4, 6)),
            ("se", se, (0.0, 0.25)),
        ):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ValueError(
                    f"space option {key} must be a non-empty subset of {list(allowed)}"
                )
        if not rep or any(not isinstance(r, bool) for r in rep) or len(set(rep)) < len(rep):
            raise ValueError(
                f"space option rep must be [false], [true] or [false, true], got {rep!r}"
            )
        if width_mult <= 0 or depth_mult <= 0:
            raise ValueError("width_mult and depth_mult must be > 0")
        acts = [activation] if isinstance(activation, str) else list(activation)
        for a in acts:
            if a not in ACTIVATIONS:
                raise ValueError(f"activation must be among {sorted(ACTIVATIONS)}, got {a!r}")
        self.width_mult = float(width_mult)
        self.depth_mult = float(depth_mult)
        self.activation = activation if isinstance(activation, str) else None
        self.stem_channels = stem_channels
        self.head_channels = head_channels
        self.dropout = dropout
        self.stochastic_depth = stochastic_depth
        self.rep = bool(rep[0]) if len(rep) == 1 else None
        layer_rows = stage_lists(layers, key="layers", length=n)
        out_rows = stage_lists(out, key="out", length=n)
        for i in range(1, n + 1):
            self.declare(
                Choice(f"s{i}.kernel", tuple(int(k) for k in kernel)),
                Choice(f"s{i}.expand", tuple(int(e) for e in expand)),
                Choice(f"s{i}.se", tuple(float(s) for s in se)),
            )
            if layer_rows is not None:
                self.declare(Choice(f"s{i}.layers", tuple(int(v) for v in layer_rows[i - 1])))
            if out_rows is not None:
                self.declare(Choice(f"s{i}.out", tuple(int(v) for v in out_rows[i - 1])))
            if self.rep is None:
                self.declare(Choice(f"s{i}.rep", tuple(rep)))
        if not isinstance(activation, str):
            self.declare(Choice("act", tuple(acts)))

    def stage_configs(self, genotype: Mapping[str, Primitive]) -> list[StageConfig]:
        """The genotype's stage table after width and depth scaling."""
        rows = []
        cin = self.stem_channels
        for i, base in enumerate(self.stages, start=1):
            cout = int(genotype.get(f"s{i}.out", base.out_channels))
            rows.append(
                StageConfig(
                    expand_ratio=float(genotype[f"s{i}.expand"]),
                    kernel=int(genotype[f"s{i}.kernel"]),
                    stride=base.stride,
                    in_channels=cin,
                    out_channels=cout,
                    layers=int(genotype.get(f"s{i}.layers", base.layers)),
                    se_ratio=float(genotype[f"s{i}.se"]),
                    rep=bool(genotype.get(f"s{i}.rep", self.rep)),
                )
            )
            cin = cout
        return scale_stages(rows, width_mult=self.width_mult, depth_mult=self.depth_mult)

    @classmethod
    def scale_options(
        cls,
        options: Mapping[str, Any],
        *,
        width: float,
        depth: float,
        resolution: int,
        **extra: float,
    ) -> dict[str, Any]:
        """Compound scaling (``nas.scaling.CompoundScalable``): multiply width and depth."""
        scaled = dict(options)
        scaled.update(
            width_mult=float(scaled.get("width_mult", 1.0)) * width,
            depth_mult=float(scaled.get("depth_mult", 1.0)) * depth,
            resolution=resolution,
            **extra,
        )
        return scaled

    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        genotype = self.validate(genotype)
        return MBConvNet(
            self.stage_configs(genotype),
            num_classes=num_classes,
            stem_channels=round_channels(self.stem_channels, self.width_mult),
            head_channels=round_channels(self.head_channels, self.width_mult),
            activation=str(genotype.get("act", self.activation)),
            dropout=self.dropout,
            stochastic_depth=self.stochastic_depth,
        )

    def identity(self, genotype: Mapping[str, Primitive]) -> str:
        """The built network: rounded stage table, stem/head widths, activation, resolution."""
        stages = [asdict(s) for s in self.stage_configs(genotype)]
        for stage in stages:
            if not stage["rep"]:  # as before rep existed: old studies keep their identities
                del stage["rep"]
        return json.dumps(
            {
                "stages": stages,
                "stem": round_channels(self.stem_channels, self.width_mult),
                "head": round_channels(self.head_channels, self.width_mult),
                "act": genotype.get("act", self.activation),
                "resolution": self.resolution_of(genotype),
                "dropout": self.dropout,
                "stochastic_depth": self.stochastic_depth,
            },
            sort_keys=True,
        )

    def describe(self, genotype: Mapping[str, Primitive]) -> str:
        parts = []
        for i in range(1, len(self.stages) + 1):
            se = "se" if float(genotype[f"s{i}.se"]) > 0 else ""
            rep = "rep" if genotype.get(f"s{i}.rep", self.rep) else ""
            part = f"{rep}k{genotype[f's{i}.kernel']}e{genotype[f's{i}.expand']}{se}"
            if f"s{i}.layers" in genotype:
                part += f"x{genotype[f's{i}.layers']}"
            if f"s{i}.out" in genotype:
                part += f"c{genotype[f's{i}.out']}"
            parts.append(part)
        if "act" in genotype:
            parts.append(str(genotype["act"]))
        return "-".join(parts)


#: EfficientNet-B0 as a point of the default space.
B0_GENOTYPE: dict[str, Primitive] = {}
for _i, (_e, _k, *_rest) in enumerate(B0_STAGES, start=1):
    B0_GENOTYPE.update({f"s{_i}.kernel": _k, f"s{_i}.expand": _e, f"s{_i}.se": 0.25})

#: A space that holds both EfficientNet-B0 and MobileNetV2.
MOBILENET_V2_OPTIONS: dict[str, Any] = {
    "layers": [[1], [2], [2, 3], [3, 4], [3], [3, 4], [1]],
    "out": [[16], [24], [32, 40], [64, 80], [96, 112], [160, 192], [320]],
    "activation": ["silu", "relu6"],
    "se": [0.0, 0.25],
}

#: MobileNetV2 (Sandler et al. 2018) as a point of ``MOBILENET_V2_OPTIONS``'s space.
MOBILENET_V2_GENOTYPE: dict[str, Primitive] = {"act": "relu6"}
for _i, (_e, _c, _n) in enumerate(
    [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)], start=1
):
    MOBILENET_V2_GENOTYPE.update(
        {
            f"s{_i}.kernel": 3,
            f"s{_i}.expand": _e,
            f"s{_i}.se": 0.0,
            f"s{_i}.layers": _n,
            f"s{_i}.out": _c,
        }
    )
