"""Sparse features of a device's first seconds of DNS, for per-event classifiers.

Thompson, Mandalari, Haddadi, "Rapid IoT Device Identification at the Edge", DistributedML '21,
feed a bag of second-level domains to an MLP. :class:`Vectorizer` builds that bag and richer
blocks next to it, each switchable and weighted through a frozen :class:`FeatureSpec`:

- ``sld``: bag of registered domains (:func:`~phloem.iot.domains.registered_domain`),
- ``name``: bag of masked full names (:func:`~phloem.iot.domains.masked_name`),
- ``token``: bag of name tokens (:func:`~phloem.iot.domains.tokens`),
- ``qtype``: counts of query types (``A``, ``AAAA``, ``PTR``, ...),
- ``count``: ``log(1 + n)`` of the number of queries and of distinct names,
- ``order``: the first ``K`` distinct registered domains with their rank (``sld@0=amazon.com``),
- ``resolver``: the resolvers queried -- a public address as such (a device that hard-codes
  ``114.114.114.114`` keeps doing so on any network), every private one as ``local``,
- ``stack``: the sender's stack fingerprint traits
  (:func:`~phloem.iot.events.stack_fingerprint`: initial TTL, RD, EDNS, zero ids, ...),
  which tell apart devices whose first query is the same name (two cameras asking for
  ``0.pool.ntp.org``). Captures only: resolver logs carry neither block.

Terms are strings ``"<block>:<term>"``; the vocabulary is sorted, so fitting twice on the same
events gives the same columns. Featurising one event (:meth:`Vectorizer.featurise`) needs only
the standard library, so the numpy-only export in :mod:`phloem.iot.models` reuses it; scipy is
imported only to build the sparse matrix in :meth:`Vectorizer.transform`.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from phloem.iot.dns import QTYPE
from phloem.iot.domains import masked_name, registered_domain, tokens
from phloem.iot.events import Event, Query

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = ["Block", "FeatureSpec", "NameParts", "Vectorizer", "Weighting", "name_parts"]


class Block(StrEnum):
    """A block of features (see the module docstring)."""

    SLD = "sld"
    NAME = "name"
    TOKEN = "token"
    QTYPE = "qtype"
    COUNT = "count"
    ORDER = "order"
    RESOLVER = "resolver"
    STACK = "stack"


class Weighting(StrEnum):
    """How a term seen ``c`` times in an event becomes a value (bag blocks and ``qtype``)."""

    BINARY = "binary"  # 1
    COUNT = "count"  # c
    LOG = "log"  # log(1 + c), a tf-idf-ish damping of retries and polling


_COUNT_TERMS = ("count:queries", "count:distinct")
_F = TypeVar("_F", np.float32, np.float64)


@lru_cache(maxsize=4096)
def _resolver_term(address: str) -> str:
    """A public resolver address as itself; private, local and unparsable ones as ``local``."""
    try:
        return address if ipaddress.ip_address(address).is_global else "local"
    except ValueError:
        return "local"


class NameParts(NamedTuple):
    """What the feature blocks and the novelty share read off one query name."""

    sld: str
    """:func:`~phloem.iot.domains.registered_domain`."""
    masked: str
    """:func:`~phloem.iot.domains.masked_name`."""
    tokens: tuple[str, ...]
    """:func:`~phloem.iot.domains.tokens`."""


@lru_cache(maxsize=16384)
def name_parts(name: str, private: bool = False) -> NameParts:
    """The registered domain, masked name and tokens of ``name``, parsed once and remembered.

    Names repeat heavily (a device asks for the same few names at every boot) and every event
    is featurised many times (per checkpoint, per query in any-time mode, per occlusion
    variant), so each name is parsed once per ``private`` setting; the cache is bounded.

    Examples
    --------
    >>> name_parts("device-metrics-us-2.amazon.com")
    NameParts(sld='amazon.com', masked='device-metrics-us-<d>.amazon.com', \
tokens=('device', 'metrics', 'us', '<d>', 'amazon', 'com', 'amazon.com'))
    """
    return NameParts(
        registered_domain(name, private=private),
        masked_name(name),
        tuple(tokens(name, private=private)),
    )


@dataclass(frozen=True)
class FeatureSpec:
    """Which feature blocks to build and how to weigh them.

    Parameters
    ----------
    blocks
        The blocks to build, in any order. Default: all of them.
    weights
        Multiplier per block (missing blocks weigh 1.0), applied before row normalisation.
    weighting
        Value of a term seen ``c`` times: see :class:`Weighting`.
    order_k
        How many leading distinct registered domains the ``order`` block records.
    min_df
        Keep a term only when at least this many training events contain it.
    l2_normalise
        Scale each row to unit Euclidean norm (rows without features stay zero).
    private_psl
        Passed to :func:`~phloem.iot.domains.registered_domain` and
        :func:`~phloem.iot.domains.tokens` as ``private``.
    """

    blocks: tuple[Block, ...] = tuple(Block)
    weights: Mapping[Block, float] = field(default_factory=dict)
    weighting: Weighting = Weighting.LOG
    order_k: int = 5
    min_df: int = 1
    l2_normalise: bool = True
    private_psl: bool = False

    def __post_init__(self) -> None:
        blocks = tuple(Block(b) for b in self.blocks)
        if not blocks:
            raise ValueError("FeatureSpec.blocks is empty: name at least one block, e.g. 'sld'")
        if len(set(blocks)) != len(blocks):
            raise ValueError(f"FeatureSpec.blocks repeats a block: {blocks}")
        weights = {Block(k): float(v) for k, v in self.weights.items()}
        if any(not math.isfinite(w) or w < 0 for w in weights.values()):
            raise ValueError(f"FeatureSpec.weights must be finite and >= 0, got {weights}")
        if self.order_k < 1:
            raise ValueError(f"FeatureSpec.order_k must be >= 1, got {self.order_k}")
        if self.min_df < 1:
            raise ValueError(f"FeatureSpec.min_df must be >= 1, got {self.min_df}")
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "weighting", Weighting(self.weighting))

    def weight(self, block: Block) -> float:
        """The multiplier of ``block`` (1.0 unless set in :attr:`weights`)."""
        return self.weights.get(block, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy of the spec (inverse: :meth:`from_dict`)."""
        return {
            "blocks": [b.value for b in self.blocks],
            "weights": {b.value: w for b, w in sorted(self.weights.items())},
            "weighting": self.weighting.value,
            "order_k": self.order_k,
            "min_df": self.min_df,
            "l2_normalise": self.l2_normalise,
            "private_psl": self.private_psl,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Rebuild a spec written by :meth:`to_dict`."""
        return cls(
            blocks=tuple(Block(b) for b in data["blocks"]),
            weights={Block(k): float(v) for k, v in data["weights"].items()},
            weighting=Weighting(data["weighting"]),
            order_k=int(data["order_k"]),
            min_df=int(data["min_df"]),
            l2_normalise=bool(data["l2_normalise"]),
            private_psl=bool(data["private_psl"]),
        )


class Vectorizer:
    """Turn :class:`~phloem.iot.events.Event` windows into sparse feature rows.

    Parameters
    ----------
    spec
        Which blocks to build and how (default: :class:`FeatureSpec` defaults).

    Examples
    --------
    >>> from phloem.iot.events import Event, Query
    >>> ev = Event("k", 0.0, (Query(0.1, "a.example.com", 1, "r"), Query(9.0, "x.org", 1, "r")))
    >>> vec = Vectorizer(FeatureSpec(blocks=(Block.SLD,))).fit([ev], window_s=5.0)
    >>> vec.feature_names
    ['sld:example.com']
    """

    def __init__(self, spec: FeatureSpec | None = None) -> None:
        self.spec = spec if spec is not None else FeatureSpec()
        self._vocab: dict[str, int] | None = None
        self._col_weight: list[float] = []  # the block weight of each column

    # --- terms of one event (pure Python: reused by the numpy-only export) ---

    def terms(self, queries: Sequence[Query]) -> dict[str, float]:
        """Unweighted, unnormalised term values of one window of queries."""
        spec = self.spec
        private = spec.private_psl
        bags: Counter[str] = Counter()
        out: dict[str, float] = {}
        parts = [name_parts(q.name, private) for q in queries]
        slds = [p.sld for p in parts]
        for block in spec.blocks:
            if block is Block.SLD:
                bags.update(f"sld:{d}" for d in slds if d)
            elif block is Block.NAME:
                bags.update(f"name:{p.masked}" for p in parts if p.masked)
            elif block is Block.TOKEN:
                for p in parts:
                    bags.update(f"token:{t}" for t in p.tokens)
            elif block is Block.QTYPE:
                bags.update(f"qtype:{QTYPE.get(q.qtype, str(q.qtype))}" for q in queries)
            elif block is Block.COUNT:
                out["count:queries"] = math.log1p(len(queries))
                out["count:distinct"] = math.log1p(len({q.name for q in queries}))
            elif block is Block.ORDER:
                leading = [d for d in dict.fromkeys(slds) if d][: spec.order_k]
                out.update({f"order:sld@{i}={d}": 1.0 for i, d in enumerate(leading)})
            elif block is Block.RESOLVER:
                bags.update(f"resolver:{_resolver_term(q.resolver)}" for q in queries if q.resolver)
            elif block is Block.STACK:
                for q in queries:
                    bags.update(f"stack:{t}" for t in q.stack.split())
        weighting = spec.weighting
        for term, c in bags.items():
            if weighting is Weighting.BINARY:
                out[term] = 1.0
            elif weighting is Weighting.COUNT:
                out[term] = float(c)
            else:
                out[term] = math.log1p(c)
        return out

    def featurise(self, queries: Sequence[Query]) -> tuple[list[int], list[float]]:
        """Column indices and values of one window (weighted and, if asked, L2-normalised).

        Terms outside the fitted vocabulary are dropped. Indices are sorted ascending.
        """
        vocab = self._require_vocab()
        spec = self.spec
        col_weight = self._col_weight
        cells: list[tuple[int, float]] = []
        for term, value in self.terms(queries).items():
            j = vocab.get(term)
            if j is None:
                continue
            w = value * col_weight[j]
            if w != 0.0:
                cells.append((j, w))
        cells.sort()
        idx = [j for j, _ in cells]
        vals = [v for _, v in cells]
        if spec.l2_normalise and vals:
            norm = math.sqrt(sum(v * v for v in vals))
            vals = [v / norm for v in vals]
        return idx, vals

    # --- fit / transform ---

    def fit(self, events: Iterable[Event], window_s: float) -> Vectorizer:
        """Build the vocabulary from the first ``window_s`` seconds of ``events``.

        Returns
        -------
        Vectorizer
            ``self``, fitted.
        """
        df: Counter[str] = Counter()
        for ev in events:
            df.update(self.terms(ev.window(window_s)).keys())
        keep = {t for t, n in df.items() if n >= self.spec.min_df}
        if Block.COUNT in self.spec.blocks:
            keep.update(_COUNT_TERMS)  # dense, always present: never pruned by min_df
        self._set_vocab(sorted(keep))
        return self

    def transform(self, events: Iterable[Event], window_s: float) -> csr_matrix:
        """Feature rows (float64 CSR, one per event) of the first ``window_s`` seconds."""
        from scipy.sparse import csr_matrix

        indptr, indices, data = self._csr_parts(events, window_s, np.float64)
        return csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, self.n_features))

    def featurise_batch(
        self, events: Sequence[Event], window_s: float
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """CSR parts ``(indptr, indices, values)`` of :meth:`transform`, numpy only (float32)."""
        return self._csr_parts(events, window_s, np.float32)

    def _csr_parts(
        self, events: Iterable[Event], window_s: float, dtype: type[_F]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[_F]]:
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for ev in events:
            idx, vals = self.featurise(ev.window(window_s))
            indices.extend(idx)
            data.extend(vals)
            indptr.append(len(indices))
        return (
            np.asarray(indptr, dtype=np.int64),
            np.asarray(indices, dtype=np.int64),
            np.asarray(data, dtype=dtype),
        )

    # --- introspection and export ---

    @property
    def feature_names(self) -> list[str]:
        """The vocabulary, in column order (sorted)."""
        return list(self._require_vocab())  # built from a sorted list, so in column order

    @property
    def n_features(self) -> int:
        """Number of columns."""
        return len(self._require_vocab())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (spec and vocabulary); inverse: :meth:`from_dict`."""
        return {"spec": self.spec.to_dict(), "vocabulary": self.feature_names}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vectorizer:
        """Rebuild a fitted vectorizer written by :meth:`to_dict`."""
        vec = cls(FeatureSpec.from_dict(data["spec"]))
        vec._set_vocab([str(t) for t in data["vocabulary"]])
        return vec

    def _set_vocab(self, terms: Sequence[str]) -> None:
        """Columns in the order of ``terms``, each with its block's weight."""
        self._vocab = {t: j for j, t in enumerate(terms)}
        by_block = {b.value: self.spec.weight(b) for b in Block}
        self._col_weight = [by_block.get(t.split(":", 1)[0], 1.0) for t in terms]

    def _require_vocab(self) -> dict[str, int]:
        if self._vocab is None:
            raise RuntimeError("Vectorizer is not fitted: call fit(events, window_s) first")
        return self._vocab
