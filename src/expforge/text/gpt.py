"""A compact decoder-only transformer (GPT-style) for character- and BPE-level language modelling.

Pre-LayerNorm blocks (LayerNorm → causal self-attention → residual, LayerNorm → MLP → residual), learned
position embeddings and an output projection tied to the token embedding, so a small model spends its
parameters on the blocks rather than on two vocabulary-sized matrices. Attention is
``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``, which picks a fused kernel (flash or
memory-efficient) on GPU and a plain one on CPU.

Torch is imported lazily: :class:`GptConfig` is plain Python (it travels in checkpoints and run records), and
the ``nn.Module`` classes are defined on first use by :func:`build_gpt`, so importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

from expforge.errors import ExpforgeError

MODEL_KIND = "gpt-lm"


@dataclass(frozen=True)
class GptConfig:
    """The shape of a model; together with the vocabulary it fixes every weight's size."""

    vocab_size: int
    context: int = 64
    layers: int = 2
    heads: int = 2
    width: int = 64
    dropout: float = 0.0
    bias: bool = False

    def validate(self) -> GptConfig:
        """One clear line per bad field, raised before any weight is allocated."""
        for name in ("vocab_size", "context", "layers", "heads", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ExpforgeError(f"--{name.replace('_', '-')}: {value!r} is not a positive integer")
        if self.width % self.heads:
            raise ExpforgeError(
                f"--width: {self.width} is not divisible by --heads {self.heads}; each head needs an equal share"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ExpforgeError(f"--dropout: {self.dropout} is outside [0, 1)")
        return self

    def architecture(self) -> dict[str, Any]:
        """What a checkpoint records so loading into another shape fails with the differing fields named.

        Dropout is left out: it changes training, not the weights, so a model trained with dropout 0.1 still
        loads for evaluation with dropout 0.
        """
        fields = dataclasses.asdict(self)
        fields.pop("dropout")
        return {"model": "gpt", **fields}

    @classmethod
    def from_architecture(cls, architecture: dict[str, Any], dropout: float = 0.0) -> GptConfig:
        """Inverse of :meth:`architecture`."""
        names = {f.name for f in dataclasses.fields(cls)} - {"dropout"}
        missing = sorted(names - set(architecture))
        if missing:
            raise ExpforgeError(f"checkpoint architecture lacks {', '.join(missing)}; not a gpt-lm checkpoint")
        return cls(**{name: architecture[name] for name in names}, dropout=dropout).validate()


def parameter_count(model: Any) -> int:
    """Trainable parameters, counting the tied embedding/output matrix once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@functools.cache
def _model_class() -> type:
    """Define the ``nn.Module`` classes on first use (keeps torch out of module import)."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - the conventional name
    from torch import nn

    class CausalSelfAttention(nn.Module):
        """Multi-head attention where position t sees positions ≤ t only."""

        def __init__(self, config: GptConfig) -> None:
            super().__init__()
            self.heads = config.heads
            self.dropout = config.dropout
            self.qkv = nn.Linear(config.width, 3 * config.width, bias=config.bias)
            self.proj = nn.Linear(config.width, config.width, bias=config.bias)
            self.resid_dropout = nn.Dropout(config.dropout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, steps, width = x.shape
            # (B, T, 3C) → three (B, heads, T, C/heads) tensors.
            q, k, v = self.qkv(x).view(batch, steps, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
            dropout = self.dropout if self.training else 0.0
            if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
                # Under CPU bfloat16 autocast the matrix products gain (AMX), but torch's CPU flash-attention
                # backward in bfloat16 is ~10x slower than in float32 (profiled: 60% of a step), so attention
                # alone runs in float32; the projections around it stay in bfloat16.
                with torch.autocast("cpu", enabled=False):
                    attended = F.scaled_dot_product_attention(
                        q.float(), k.float(), v.float(), dropout_p=dropout, is_causal=True
                    )
            else:
                attended = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
            merged = attended.transpose(1, 2).reshape(batch, steps, width)
            return self.resid_dropout(self.proj(merged))

    class Block(nn.Module):
        """Pre-LN transformer block: normalising *before* each sublayer keeps the residual path an identity,
        which lets small models train at the high learning rates a few-minute budget needs."""

        def __init__(self, config: GptConfig) -> None:
            super().__init__()
            self.norm_attention = nn.LayerNorm(config.width, bias=config.bias)
            self.attention = CausalSelfAttention(config)
            self.norm_mlp = nn.LayerNorm(config.width, bias=config.bias)
            self.mlp = nn.Sequential(
                nn.Linear(config.width, 4 * config.width, bias=config.bias),
                nn.GELU(),
                nn.Linear(4 * config.width, config.width, bias=config.bias),
                nn.Dropout(config.dropout),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attention(self.norm_attention(x))
            return x + self.mlp(self.norm_mlp(x))

    class Gpt(nn.Module):
        """Token + position embeddings → blocks → LayerNorm → logits over the vocabulary (tied weights)."""

        def __init__(self, config: GptConfig) -> None:
            super().__init__()
            self.config = config
            self.token_embedding = nn.Embedding(config.vocab_size, config.width)
            self.position_embedding = nn.Embedding(config.context, config.width)
            self.embedding_dropout = nn.Dropout(config.dropout)
            self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
            self.norm_out = nn.LayerNorm(config.width, bias=config.bias)
            self.head = nn.Linear(config.width, config.vocab_size, bias=False)
            self.head.weight = self.token_embedding.weight  # weight tying
            self.apply(self._init_weights)
            # Residual projections start smaller, so the sum over 2·layers sublayers keeps unit scale at init.
            residual_std = 0.02 / math.sqrt(2 * config.layers)
            for block in self.blocks:
                assert isinstance(block, Block)
                output_layer = block.mlp[2]
                assert isinstance(output_layer, nn.Linear)
                nn.init.normal_(block.attention.proj.weight, mean=0.0, std=residual_std)
                nn.init.normal_(output_layer.weight, mean=0.0, std=residual_std)

        @staticmethod
        def _init_weights(module: nn.Module) -> None:
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

        def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
            """Logits (B, T, vocab) and, when ``targets`` is given, the mean next-token cross-entropy (nats)."""
            steps = tokens.shape[1]
            if steps > self.config.context:
                raise ValueError(f"sequence of {steps} tokens exceeds the model context {self.config.context}")
            positions = torch.arange(steps, device=tokens.device)
            x = self.embedding_dropout(self.token_embedding(tokens) + self.position_embedding(positions))
            for block in self.blocks:
                x = block(x)
            logits = self.head(self.norm_out(x))
            if targets is None:
                return logits, None
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))
            return logits, loss

    return Gpt


def build_gpt(config: GptConfig) -> Any:
    """A freshly initialised model (weights drawn from torch's global RNG: seed it first)."""
    return _model_class()(config.validate())


def optimizer_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: decay matrices (linear weights, embeddings), not biases or LayerNorm gains."""
    decay: list[Any] = []
    no_decay: list[Any] = []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
