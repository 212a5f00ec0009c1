"""Inception space: per-module branch widths and the form of the "5x5" branch (GoogLeNet macro).

For each searched module ``m`` (``3a`` .. ``5b``) and each searched width key ``w``
(``c1x1``, ``c3x3_reduce``, ``c3x3``, ``c5x5_reduce``, ``c5x5``, ``pool_proj``) the choice
``m.w`` takes channel counts: GoogLeNet's width times each multiplier in ``widths`` (times
``width_mult``), or the explicit list given in ``explicit[m.w]``. ``m.b5`` chooses the "5x5"
branch as a 5x5 conv, a 3x3 conv or two stacked 3x3 convs. GoogLeNet itself is the point with
every multiplier 1.0 and every ``b5`` = ``5x5`` (``googlenet_genotype``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from nas.layers import GOOGLENET_WIDTHS, WIDTH_KEYS, GoogLeNet, InceptionModule
from nas.space import Choice, Primitive, SearchSpace, register_space


def _scaled(width: int, mult: float) -> int:
    return max(1, round(width * mult))


@register_space
class InceptionSpace(SearchSpace):
    """GoogLeNet-shaped networks with searched Inception branch widths.

    Args:
        resolution: input resolution.
        modules: which of the nine modules are searched (the others keep GoogLeNet's widths).
        widths: multipliers of GoogLeNet's widths offered for every searched width.
        searched: which width keys are searched (the others are fixed).
        explicit: per-label explicit channel lists (``{"3a.c1x1": [32, 64]}``), overriding
            ``widths`` for that label.
        branch5x5: forms offered for the "5x5" branch (``5x5``, ``3x3``, ``3x3x2``).
        width_mult: multiplies every width (the proxy's reduced network).
        aux_logits: add GoogLeNet's two auxiliary classifiers (training only).
        dropout: classifier dropout.

    Example:
        >>> from nas.space import make_space
        >>> space = make_space("inception", resolution=32, modules=["3a"], widths=[0.5, 1.0])
        >>> sorted(space.grid())[:2]
        ['3a.b5', '3a.c1x1']
    """

    def __init__(
        self,
        *,
        resolution: int = 224,
        modules: Sequence[str] = tuple(GOOGLENET_WIDTHS),
        widths: Sequence[float] = (0.5, 0.75, 1.0),
        searched: Sequence[str] = ("c1x1", "c3x3", "c5x5", "pool_proj"),
        explicit: Mapping[str, Sequence[int]] | None = None,
        branch5x5: Sequence[str] = InceptionModule.BRANCH_FORMS,
        width_mult: float = 1.0,
        aux_logits: bool = False,
        dropout: float = 0.4,
    ) -> None:
        super().__init__(resolution=resolution)
        for m in modules:
            if m not in GOOGLENET_WIDTHS:
                raise ValueError(f"modules: unknown module {m!r}; known: {list(GOOGLENET_WIDTHS)}")
        for k in searched:
            if k not in WIDTH_KEYS:
                raise ValueError(f"searched: unknown width {k!r}; known: {list(WIDTH_KEYS)}")
        for f in branch5x5:
            if f not in InceptionModule.BRANCH_FORMS:
                raise ValueError(
                    f"branch5x5: unknown form {f!r}; known: {list(InceptionModule.BRANCH_FORMS)}"
                )
        if not widths or any(w <= 0 for w in widths):
            raise ValueError(f"widths must be positive multipliers, got {list(widths)}")
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        explicit = {k: [int(v) for v in vs] for k, vs in (explicit or {}).items()}
        self.modules = list(modules)
        self.width_mult = float(width_mult)
        self.aux_logits = aux_logits
        self.dropout = dropout
        for m in self.modules:
            base = dict(zip(WIDTH_KEYS, GOOGLENET_WIDTHS[m], strict=True))
            for k in searched:
                label = f"{m}.{k}"
                if label in explicit:
                    values = tuple(int(v) for v in explicit.pop(label))
                else:
                    values = tuple(sorted({_scaled(base[k], w * width_mult) for w in widths}))
                self.declare(Choice(label, values))
            self.declare(Choice(f"{m}.b5", tuple(branch5x5)))
        if explicit:
            raise ValueError(
                f"explicit: {next(iter(explicit))!r} is not a searched width label "
                "(module.width with the module in `modules` and the width in `searched`)"
            )

    def module_widths(self, genotype: Mapping[str, Primitive]) -> dict[str, dict[str, int]]:
        """Every module's six widths under a genotype."""
        out: dict[str, dict[str, int]] = {}
        for m, base in GOOGLENET_WIDTHS.items():
            out[m] = {
                k: int(genotype.get(f"{m}.{k}", _scaled(b, self.width_mult)))
                for k, b in zip(WIDTH_KEYS, base, strict=True)
            }
        return out

    def build(self, genotype: Mapping[str, Primitive], *, num_classes: int) -> nn.Module:
        genotype = self.validate(genotype)
        return GoogLeNet(
            modules=self.module_widths(genotype),
            branch5x5={m: str(genotype[f"{m}.b5"]) for m in self.modules},
            num_classes=num_classes,
            aux_logits=self.aux_logits,
            dropout=self.dropout,
            stem_width=self.width_mult,
        )

    def describe(self, genotype: Mapping[str, Primitive]) -> str:
        parts = []
        for m in self.modules:
            widths = "/".join(
                str(genotype[f"{m}.{k}"]) for k in WIDTH_KEYS if f"{m}.{k}" in genotype
            )
            parts.append(f"{m}:{widths}:{genotype[f'{m}.b5']}")
        return " ".join(parts)


def googlenet_genotype(space: InceptionSpace) -> dict[str, Primitive]:
    """GoogLeNet's own genotype in ``space`` (needs multiplier 1.0 and the 5x5 form offered)."""
    widths = space.module_widths({})
    genotype: dict[str, Primitive] = {}
    for choice in space.choices:
        m, key = choice.label.split(".")
        genotype[choice.label] = "5x5" if key == "b5" else widths[m][key]
    return space.validate(genotype)
