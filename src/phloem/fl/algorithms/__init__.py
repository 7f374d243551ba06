"""Federated algorithms, one module per paper."""

from phloem.fl.algorithms.base import Algorithm
from phloem.fl.algorithms.cofig import Cofig
from phloem.fl.algorithms.dcgd import DCGD
from phloem.fl.algorithms.diana import Diana
from phloem.fl.algorithms.ef21 import EF21
from phloem.fl.algorithms.ef21_bc import EF21BC
from phloem.fl.algorithms.ef21_pp import EF21PP
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.algorithms.feddyn import FedDyn
from phloem.fl.algorithms.fednova import FedNova
from phloem.fl.algorithms.fedprox import FedProx
from phloem.fl.algorithms.frecon import Frecon
from phloem.fl.algorithms.gradskip import GradSkip
from phloem.fl.algorithms.marina import Marina
from phloem.fl.algorithms.page import Page
from phloem.fl.algorithms.pp_marina import PPMarina
from phloem.fl.algorithms.proxskip import ProxSkip
from phloem.fl.algorithms.scaffold import Scaffold

__all__ = [
    "DCGD",
    "EF21",
    "EF21BC",
    "EF21PP",
    "Algorithm",
    "Cofig",
    "Diana",
    "FedAvg",
    "FedDyn",
    "FedNova",
    "FedProx",
    "Frecon",
    "GradSkip",
    "Marina",
    "PPMarina",
    "Page",
    "ProxSkip",
    "Scaffold",
]
