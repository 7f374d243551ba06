"""LEAF's Shakespeare model: a character embedding, a stacked LSTM and a linear read-out.

Caldas et al., "LEAF: A Benchmark for Federated Settings", arXiv:1812.01097, 2018 (the
Shakespeare reference model, after McMahan et al., AISTATS 2017): characters are embedded in
``R^8``, a 2-layer LSTM with 256 units reads the window of 80 characters, and a linear layer maps
its last hidden state ``h_T`` to logits over the vocabulary:

    z = W h_T + b,   loss = CE(z, c_{T+1}) = -log softmax(z)_{c_{T+1}},

the cross-entropy of the character that follows the window only (LEAF's loss; not a loss over
every position). Perplexity on a test set is ``exp`` of its mean cross-entropy. ``embed``,
``hidden`` and ``layers`` change the sizes (tests use a tiny one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from phloem.fl.models import Model
from phloem.fl.registries import MODELS

__all__ = ["CharLSTM", "CharLSTMNet", "CharLSTMParams"]


class CharLSTMNet(nn.Module):
    """Embedding -> ``layers``-layer LSTM -> linear on the last step's hidden state.

    Parameters
    ----------
    vocab
        Number of characters (inputs and outputs).
    embed, hidden, layers
        Embedding width, LSTM units, LSTM layers.
    """

    def __init__(self, vocab: int, embed: int = 8, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, vocab)`` of the character after each window of ``x`` ``(n, T)`` int64."""
        h, _ = self.lstm(self.embed(x))
        out: torch.Tensor = self.head(h[:, -1])
        return out


@dataclass(frozen=True)
class CharLSTMParams:
    """``embed`` width (LEAF: 8), ``hidden`` LSTM units (256), ``layers`` (2)."""

    embed: int = 8
    hidden: int = 256
    layers: int = 2

    def __post_init__(self) -> None:
        for k in ("embed", "hidden", "layers"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"model.{k} must be an integer >= 1, got {v!r}")


@MODELS.register
class CharLSTM(Model):
    name: ClassVar[str] = "char_lstm"
    description: ClassVar[str] = (
        "character LSTM, next-char cross-entropy on the last char (Caldas et al., arXiv 2018)"
    )
    Params: ClassVar[type[CharLSTMParams]] = CharLSTMParams
    tokens: ClassVar[bool] = True

    @classmethod
    def build(
        cls, params: CharLSTMParams, feature_shape: tuple[int, ...], num_outputs: int
    ) -> nn.Module:
        if len(feature_shape) != 1:
            raise ValueError(
                f"model 'char_lstm' needs windows of character indices (feature shape (T,)), "
                f"got {feature_shape}; use it with the shakespeare data set"
            )
        return CharLSTMNet(num_outputs, params.embed, params.hidden, params.layers)
