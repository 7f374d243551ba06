"""SecAgg+ neighbour graphs and the choice of their parameters (Bell et al., CCS 2020).

SecAgg (Bonawitz et al., CCS 2017) has every client share its two secrets -- the seed ``b_u``
of its self-mask and the key ``s_u^SK`` behind its pairwise masks -- with all ``n - 1`` others,
which costs ``O(n)`` per client and ``O(n^2)`` in all. SecAgg+ (Bell, Bonawitz, Gascón,
Lepoint, Raykova, CCS 2020) replaces the complete graph by a sparse random one: client ``u``
masks only against its neighbours and shares its secrets only with them. Following Flower we
count **k = num_shares** share holders of each client *including itself* (so ``k - 1``
neighbours) and call **t = threshold** the number of those shares that reconstruct a secret.
The complete graph, ``k = n``, is plain SecAgg.

The subpackage has three parts:

- :mod:`~phloem.secagg.graph.build` -- the graphs themselves (complete, randomly relabelled
  Harary) and their connectivity once clients are removed;
- :mod:`~phloem.secagg.graph.search` -- the security and correctness conditions, and the
  choice (:func:`choose_parameters`) or check (:func:`check_parameters`) of ``(k, t)``;
- :mod:`~phloem.secagg.graph.explain` -- :meth:`GraphParams.explain`'s account of a choice.

Choosing parameters and building graphs need only numpy and the standard library (the
search computes its hypergeometric tails with :func:`math.lgamma`); only the connectivity
analysis in :mod:`~phloem.secagg.graph.build` uses SciPy, imported when first called.
"""

from phloem.secagg.graph.build import (
    complete_neighbours,
    components_after_dropout,
    connectivity_failure_rate,
    harary_neighbours,
)
from phloem.secagg.graph.search import GraphParams, ParamOrigin, check_parameters, choose_parameters

__all__ = [
    "GraphParams",
    "ParamOrigin",
    "check_parameters",
    "choose_parameters",
    "complete_neighbours",
    "components_after_dropout",
    "connectivity_failure_rate",
    "harary_neighbours",
]
