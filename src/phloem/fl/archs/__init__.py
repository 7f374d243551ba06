"""Model architectures from papers, one module each, registered in ``MODELS`` on import.

- :mod:`~phloem.fl.archs.char_lstm`: LEAF's Shakespeare character LSTM (``char_lstm``).
- :mod:`~phloem.fl.archs.resnet`: the CIFAR ResNet-20 of He et al. (``resnet20``).
- :mod:`~phloem.fl.archs.leaf_cnn`: LEAF's FEMNIST CNN (``femnist_cnn``).
"""

from phloem.fl.archs.char_lstm import CharLSTM, CharLSTMNet, CharLSTMParams
from phloem.fl.archs.leaf_cnn import FemnistCNN, femnist_cnn
from phloem.fl.archs.resnet import Norm, ResNet20, ResNet20Params, resnet20

__all__ = [
    "CharLSTM",
    "CharLSTMNet",
    "CharLSTMParams",
    "FemnistCNN",
    "Norm",
    "ResNet20",
    "ResNet20Params",
    "femnist_cnn",
    "resnet20",
]
