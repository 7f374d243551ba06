"""phloem: private, efficient distributed machine learning.

Importing :mod:`phloem` is cheap: it loads no torch. The areas live in subpackages:

- :mod:`phloem.core` -- seeded RNG streams, configs, the registry every plug-in area uses, run
  directories, callbacks, plotting
- :mod:`phloem.data` -- dataset loaders (never download) and federated partitioning
- :mod:`phloem.fl` -- the federated-optimisation simulator (after FL_PyTorch)
- :mod:`phloem.secagg` -- secure aggregation, SecAgg and SecAgg+, in process and in Flower
  (after Salvia)
- :mod:`phloem.attacks` -- privacy attacks on split models (planned)
- :mod:`phloem.spb`, :mod:`phloem.jigsaw` -- structured partial backpropagation and an
  SPB-aware cluster scheduler (planned)
- :mod:`phloem.iot` -- rapid IoT device identification from DNS
"""

from phloem.core.errors import (
    ConfigError,
    DataNotFoundError,
    DivergenceError,
    PhloemError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataNotFoundError",
    "DivergenceError",
    "PhloemError",
    "__version__",
]
