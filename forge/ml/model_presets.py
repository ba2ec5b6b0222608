"""Model sizes by name, in a module light enough for configuration checks (no torch import)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from forge.errors import InputError


@dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = 128
    n_heads: int = 8
    n_layers: int = 4
    ff_dim: int = 512
    dropout: float = 0.0  # see PRESETS
    norm_first: bool = False  # pre-norm layers (with a final LayerNorm): steadier at high lr

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        norm = ", pre-norm" if self.norm_first else ""
        return f"embed {self.embed_dim}, {self.n_heads} heads, {self.n_layers} layers, ff {self.ff_dim}{norm}"


#: Parameter counts: xl 3,253,538 (the reference's 3.3M class: large at twice the width, for a GPU),
#: large 817,033 (the ~817K the project's figures use), small 106,162, tiny 18,705.
#: No dropout: the flywheel sees fresh deals every iteration, and on this project's CPU dropout 0.1
#: cost a third of the training throughput and learnt less per sample too (docs/time-to-quality.md:
#: val Q-gap 1.043 vs 0.857 after 8.3 CPU minutes from scratch, 60 deals x 10,000 samples, lr 1e-3).
#: Checkpoints keep the dropout they were trained with.
PRESETS: dict[str, ModelConfig] = {
    "xl": ModelConfig(256, 8, 4, 1024, 0.0),
    "large": ModelConfig(128, 8, 4, 512, 0.0),
    "small": ModelConfig(64, 4, 2, 256, 0.0),
    "tiny": ModelConfig(32, 2, 2, 64, 0.0),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown model preset {name!r} (choose {', '.join(PRESETS)})") from None
