"""Floats to ring elements and back: clipping, weighting, stochastic rounding, overflow check.

Secure aggregation adds vectors in the ring Z_(2^b) (:mod:`phloem.secagg.ring`), so each
client's real-valued update ``x`` (and its weight ``w``) must become ring elements whose ring
sum reveals the real sum. With ``W = max_weight``, ``s = w / W``, ``L = levels`` and
``step = 2 * clip / L``, a client sends the ``d + 1`` entries

    q_j = SR((s * clip(x_j) + clip) / step)   (j < d),     q_d = SR(s * L),

where ``clip(.)`` clips to ``[-clip, clip]`` (before weighting, so ``s * clip(x_j)`` stays in
``[-clip, clip]`` and ``q_j`` in ``[0, L]``) and ``SR(u) = floor(u) + [U < u - floor(u)]``,
``U ~ Uniform[0, 1)``, is stochastic rounding: ``E[SR(u)] = u`` and ``|SR(u) - u| < 1``.

As long as ``n * L < 2^b`` (:meth:`Quantizer.check`) the ring sum of ``n`` encodings never
wraps, so it equals the integer sum, and :meth:`Quantizer.decode_sum` recovers

    S_hat = W * (step * sum_i q_ij - n * clip)  ~  S = sum_i w_i clip(x_ij),
    Omega_hat = W * sum_i q_id / L             ~  Omega = sum_i w_i,

both unbiased, with deterministic errors ``|S_hat - S| < n * W * step`` per entry and
``|Omega_hat - Omega| < n * W / L``.

Error of the weighted mean. Let ``m = S / Omega`` be the exact weighted mean (``|m| <= clip``)
and ``m_hat = S_hat / Omega_hat`` the decoded one (:meth:`Quantizer.decode_mean`). From
``m_hat - m = ((S_hat - S) - m * (Omega_hat - Omega)) / Omega_hat``,

    |m_hat - m| < n * W * step * (1 + |m| / (2 * clip)) / Omega_hat
               <= 1.5 * n * W * step / Omega_hat,

using ``W / L = W * step / (2 * clip)``. When every client sends full weight (``Omega ~ n W``)
the decoded mean is within 1.5 steps of the exact one, and within ``step`` for ``m = 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from phloem.core.errors import ConfigError
from phloem.secagg.ring import MAX_BITS, dtype_for_bits

__all__ = ["Quantizer"]

# Largest float64 below 2^64: ``floor(u)`` is clamped here before the uint64 cast.
_BELOW_2_64 = float(np.nextafter(np.float64(2.0**64), np.float64(0.0)))


def _is_count(value: object) -> bool:
    """A positive integer (Python or numpy), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and bool(value >= 1)


def _positive(field: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0.0):
        raise ConfigError(field, f"{value!r} must be a positive finite number", ["> 0"])


@dataclass(frozen=True)
class Quantizer:
    """Maps weighted, clipped float vectors to ``Z_(2^modulus_bits)`` so that sums survive.

    Parameters
    ----------
    clip
        Inputs are clipped to ``[-clip, clip]`` before weighting.
    levels
        Quantised values lie in ``[0, levels]``; the resolution is ``step = 2 * clip / levels``.
    modulus_bits
        Ring ``Z_(2^modulus_bits)``, 1..64; vectors use :func:`~phloem.secagg.ring.dtype_for_bits`.
    max_weight
        Client weights must lie in ``[0, max_weight]``.

    Raises
    ------
    ConfigError
        If a field is out of range, or ``levels >= 2^modulus_bits`` (one encoding would not fit).

    Notes
    -----
    Rounding is computed in float64, so with ``levels`` above ``2^53`` (only possible with
    ``modulus_bits > 53``) it is only as fine and as unbiased as float64 resolution allows.
    """

    clip: float
    levels: int
    modulus_bits: int
    max_weight: float = 1.0

    def __post_init__(self) -> None:
        _positive("clip", self.clip)
        _positive("max_weight", self.max_weight)
        dtype_for_bits(self.modulus_bits)
        if not _is_count(self.levels):
            raise ConfigError("levels", f"{self.levels!r} is not a number of levels", ["int >= 1"])
        object.__setattr__(self, "levels", int(self.levels))  # numpy ints -> int (exact maths)
        self.check(1)

    @property
    def step(self) -> float:
        """Resolution of one quantised unit, ``2 * clip / levels``."""
        return 2.0 * self.clip / self.levels

    @property
    def dtype(self) -> np.dtype[np.unsignedinteger]:
        """The unsigned dtype of encoded vectors."""
        return dtype_for_bits(self.modulus_bits)

    def max_clients(self) -> int:
        """The most encodings that can be summed without wrapping: ``(2^b - 1) // levels``."""
        return ((1 << self.modulus_bits) - 1) // self.levels

    def check(self, n_clients: int) -> None:
        """Refuse a configuration whose sum of ``n_clients`` encodings could wrap around.

        Parameters
        ----------
        n_clients
            Number of encodings summed (clients whose inputs enter the sum, not shares).

        Raises
        ------
        ConfigError
            Field ``levels`` unless ``n_clients * levels < 2^modulus_bits``; the message gives
            the largest safe ``levels`` and the smallest sufficient ``modulus_bits``.
        """
        if not _is_count(n_clients):
            raise ConfigError("n_clients", f"{n_clients!r} is not a number of clients", [">= 1"])
        n_clients = int(n_clients)
        if n_clients * self.levels < 1 << self.modulus_bits:
            return
        safe = ((1 << self.modulus_bits) - 1) // n_clients
        need = (n_clients * self.levels).bit_length()
        raise ConfigError(
            "levels",
            f"{n_clients} clients x {self.levels} levels >= 2^{self.modulus_bits}: the sum would "
            f"wrap around the ring and decode to garbage",
            [f"levels <= {safe} (modulus_bits = {self.modulus_bits})"]
            + ([f"modulus_bits >= {need}"] if need <= MAX_BITS else []),
        )

    @classmethod
    def for_clients(
        cls, n_clients: int, clip: float, modulus_bits: int = 32, max_weight: float = 1.0
    ) -> Quantizer:
        """The finest quantizer whose sum over ``n_clients`` encodings cannot overflow.

        Parameters
        ----------
        n_clients
            Number of encodings that will be summed.
        clip, modulus_bits, max_weight
            As in :class:`Quantizer`.

        Returns
        -------
        Quantizer
            With ``levels = (2^modulus_bits - 1) // n_clients``.

        Raises
        ------
        ConfigError
            If even ``levels = 1`` would overflow (``n_clients >= 2^modulus_bits``).
        """
        dtype_for_bits(modulus_bits)
        if not _is_count(n_clients):
            raise ConfigError("n_clients", f"{n_clients!r} is not a number of clients", [">= 1"])
        n_clients = int(n_clients)
        levels = ((1 << modulus_bits) - 1) // n_clients
        if levels < 1:
            raise ConfigError(
                "modulus_bits",
                f"2^{modulus_bits} is too small to sum {n_clients} clients",
                [f">= {n_clients.bit_length()}"],
            )
        return cls(clip=clip, levels=levels, modulus_bits=modulus_bits, max_weight=max_weight)

    def encode(self, x: npt.ArrayLike, weight: float, gen: np.random.Generator) -> np.ndarray:
        """One client's ring vector: ``d`` weighted, clipped, rounded entries and its weight.

        Parameters
        ----------
        x
            The update, flattened in C order to ``d`` entries; must be finite.
        weight
            The client's weight in ``[0, max_weight]`` (e.g. its number of examples).
        gen
            Draws the ``d + 1`` uniforms of the stochastic rounding (one call).

        Returns
        -------
        numpy.ndarray
            Shape ``(d + 1,)``, dtype :attr:`dtype`, entries in ``[0, levels]``.

        Raises
        ------
        ConfigError
            Field ``weight`` for a weight outside ``[0, max_weight]``, field ``x`` for NaN or
            infinite entries.
        """
        w = float(weight)
        if not (math.isfinite(w) and 0.0 <= w <= self.max_weight):
            raise ConfigError(
                "weight", f"{weight!r} is not a client weight", [f"[0, {self.max_weight:g}]"]
            )
        v = np.asarray(x)
        if v.dtype.kind != "f":
            v = v.astype(np.float64)
        v = v.ravel()  # float32 stays float32: the arithmetic below writes float64 in place
        finite = np.isfinite(v)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ConfigError(
                "x",
                f"entry {bad} is {v[bad]} ({int(v.size - finite.sum())} non-finite entries): "
                f"a diverged update cannot be aggregated",
                ["finite floats"],
            )
        share = w / self.max_weight
        half = 0.5 * self.levels
        u = np.empty(v.size + 1, dtype=np.float64)
        body = u[:-1]
        # (share * clip(v) / clip + 1) * half, in place: no temporaries of the input's size.
        # Clipped in float64 (dtype=): a float32 loop would clip to float32(clip), so a float32
        # input encodes exactly as its float64 copy would.
        np.clip(v, -self.clip, self.clip, out=body, dtype=np.float64)
        body *= share * half / self.clip
        body += half
        u[-1] = share * self.levels
        return self._round(u, gen)

    def _round(self, u: npt.NDArray[np.float64], gen: np.random.Generator) -> np.ndarray:
        """Stochastic rounding of ``u`` into ``[0, levels]`` as ring elements."""
        np.clip(u, 0.0, float(self.levels), out=u)
        if self.dtype.itemsize == 8:
            np.minimum(u, _BELOW_2_64, out=u)  # float(2^64 - 1) rounds up to 2^64
        # u >= 0, so truncation is floor; floor(u) <= levels < 2^bits fits the ring's dtype.
        # Fewer, smaller temporaries matter: each fresh array costs its page faults.
        q = u.astype(self.dtype)
        u -= q  # the fractional parts, in place
        q += gen.random(u.size) < u
        np.minimum(q, self.dtype.type(self.levels), out=q)
        return q

    def decode_sum(self, total: npt.ArrayLike, n_included: int) -> tuple[np.ndarray, float]:
        """Undo the encoding of a ring sum of ``n_included`` encodings.

        Parameters
        ----------
        total
            Ring sum (shape ``(d + 1,)``) of the encodings of the included clients.
        n_included
            How many encodings the sum contains.

        Returns
        -------
        tuple[numpy.ndarray, float]
            ``(sum_i w_i * clip(x_i), sum_i w_i)``, the first as float64 of shape ``(d,)``.

        Raises
        ------
        ConfigError
            If ``n_included`` could have wrapped the ring (:meth:`check`), or an entry exceeds
            ``n_included * levels``: the vector is not a sum of ``n_included`` encodings
            (wrong count, or an unmasking error).
        """
        self.check(n_included)
        n_included = int(n_included)
        t = np.asarray(total)
        if t.ndim != 1 or t.size < 1:
            raise ConfigError("total", f"shape {t.shape} is not a ring vector", ["(d + 1,)"])
        if int(t.max()) > n_included * self.levels:
            raise ConfigError(
                "n_included",
                f"an entry of the sum, {int(t.max())}, exceeds {n_included} x {self.levels}: "
                f"this is not the sum of {n_included} encodings (wrong count or bad unmasking)",
            )
        t = t.astype(np.float64)
        values = self.max_weight * (t[:-1] * self.step - n_included * self.clip)
        weight = self.max_weight * float(t[-1]) / self.levels
        return values, weight

    def decode_mean(self, total: npt.ArrayLike, n_included: int) -> np.ndarray:
        """Weighted mean ``sum_i w_i clip(x_i) / sum_i w_i`` from a ring sum.

        Within ``1.5 * n * max_weight * step / Omega_hat`` of the exact weighted mean per
        entry, ``Omega_hat`` the decoded total weight (see the module docstring).

        Raises
        ------
        ConfigError
            As :meth:`decode_sum`, or field ``weight`` when the decoded total weight is 0.
        """
        values, weight = self.decode_sum(total, n_included)
        if weight <= 0.0:
            raise ConfigError(
                "weight", "the included clients' total weight is 0: their mean is undefined"
            )
        return values / weight
