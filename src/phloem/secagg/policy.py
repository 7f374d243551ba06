"""What a client accepts from a server: its own minimum threshold and graph policy.

The round's threshold ``t``, the client's number of share holders ``k`` (itself and the
neighbours the server assigned it) and the number of clients ``n`` all come from the server.
A client that took them on trust could be unmasked by a malicious server: told ``t = 2`` with
``k = 5`` holders, two holders told "it survived" give the shares of its mask seed and two
told "it dropped" the shares of its key (a *split view*). So each client checks the round
against its own :class:`ClientPolicy` at set-up and refuses (drops out of) a round that
violates it:

- ``t > k / 2`` always: then an honest holder's single answer per client means no two
  disjoint groups of ``t`` holders exist, and the server alone never gets both secrets;
- ``t <= k <= n`` and ``n >= min_clients`` (a sum over too few clients reveals too much);
- ``t >= min_threshold`` when one is set;
- with ``tolerate_corrupt > 0``, the security condition of Bell et al. for the advertised
  ``(n, k, t)``: a server colluding with ``floor(tolerate_corrupt * n)`` corrupt clients
  unmasks some client with probability at most ``2^-sigma``
  (:func:`phloem.secagg.graph.search.security_failure_log2` for its own ``k``, the bound the
  server's parameter choice uses at the client with the most holders, so a round planned by
  :meth:`SecAggSettings.parameters` for the same targets passes at every client).

:meth:`ClientPolicy.from_settings` gives a client the targets of a deployment's settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from phloem.core.errors import ConfigError

if TYPE_CHECKING:
    from phloem.secagg.settings import SecAggSettings

__all__ = ["ClientPolicy"]


@dataclass(frozen=True)
class ClientPolicy:
    """A client's own conditions on the rounds it takes part in.

    Attributes
    ----------
    min_threshold
        Refuse a round whose threshold ``t`` is below this (``None``: no fixed minimum).
    min_clients
        Refuse a round of fewer clients than this (at least 2).
    tolerate_corrupt
        Fraction in ``[0, 1)`` of the round's clients that may be corrupt and collude with
        the server; ``0`` checks only the conditions that need no assumption about them.
    sigma
        Security target in bits: the probability that the server and the corrupt clients
        unmask some client is at most ``2^-sigma`` (used when ``tolerate_corrupt > 0``).

    Raises
    ------
    ConfigError
        At construction, naming the field, for a value out of range (NaN included).
    """

    min_threshold: int | None = None
    min_clients: int = 2
    tolerate_corrupt: float = 0.0
    sigma: float = 40.0

    def __post_init__(self) -> None:
        t = self.min_threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 2):
            raise ConfigError("min_threshold", f"{t!r} shares", ["int >= 2", None])
        m = self.min_clients
        if isinstance(m, bool) or not isinstance(m, int) or m < 2:
            raise ConfigError("min_clients", f"{m!r} clients", ["int >= 2"])
        c = self.tolerate_corrupt
        if isinstance(c, bool) or not (isinstance(c, int | float) and 0.0 <= c < 1.0):
            raise ConfigError("tolerate_corrupt", f"{c!r} is not a fraction", ["[0, 1)"])
        s = self.sigma
        if isinstance(s, bool) or not (isinstance(s, int | float) and math.isfinite(s) and s > 0):
            raise ConfigError("sigma", f"{s!r} bits", ["> 0"])

    @classmethod
    def from_settings(cls, settings: SecAggSettings, min_clients: int = 2) -> ClientPolicy:
        """The policy of a client that shares the deployment's targets: the corrupt fraction
        and security bits of ``settings``."""
        return cls(
            min_clients=min_clients,
            tolerate_corrupt=settings.tolerate_corrupt,
            sigma=settings.sigma,
        )

    def violation(self, n: int, k: int, t: int) -> str | None:
        """Why a round of ``n`` clients, ``k`` holders of this client's shares and threshold
        ``t`` is refused, or ``None`` when it is acceptable."""
        if n < max(2, self.min_clients):
            return f"{n} clients in the round; this client needs at least {self.min_clients}"
        if not 2 <= k <= n:
            return f"{k} share holders (itself included) in a round of {n} clients"
        if 2 * t <= k:
            return (
                f"threshold {t} with {k} share holders: t must exceed k / 2 = {k / 2:g}, or a "
                "server telling holders different survivor sets could rebuild both of its "
                "secrets"
            )
        if t > k:
            return f"threshold {t} exceeds its {k} share holders"
        if self.min_threshold is not None and t < self.min_threshold:
            return f"threshold {t} is below this client's minimum {self.min_threshold}"
        if self.tolerate_corrupt > 0.0:
            from phloem.secagg.graph.search import security_failure_log2

            log2_p = security_failure_log2(n, k, t, self.tolerate_corrupt)
            if log2_p > -self.sigma:
                return (
                    f"threshold {t} with {k} share holders over {n} clients misses the security "
                    f"target: with {self.tolerate_corrupt:g} of the clients corrupt, a client is "
                    f"unmasked with probability up to 2^{log2_p:.1f} > 2^-{self.sigma:g} (raise "
                    "the threshold and share holders, or lower tolerate_corrupt if fewer "
                    "clients can be corrupt)"
                )
        return None
