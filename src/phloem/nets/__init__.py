"""Neural-network pieces the torch-based areas share: layers, the standard architectures as
ordered, named layer lists, and the training recipe and image data.

- :mod:`phloem.nets.layers`: :class:`~phloem.nets.layers.Normalize`, ResNet's
  :class:`~phloem.nets.layers.BasicBlock`, VGG's conv-BN-ReLU, data-set statistics.
- :mod:`phloem.nets.architectures`: LeNet-5, CIFAR ResNet-20 and a width-scaled VGG-16 as
  ``[(name, module), ...]``; :mod:`phloem.attacks` splits them at a named layer,
  :mod:`phloem.spb` groups them into backpropagation blocks.
- :mod:`phloem.nets.training`: the ``[train]`` recipe, image data, and a training loop's pieces.

Dependency direction: ``core`` <- ``data`` <- ``nets`` <- areas. Importing this package is cheap
(no torch); its modules import torch.
"""
