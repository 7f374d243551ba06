"""Structured partial backpropagation (Kumar, Subramanian, Venkataraman & Akella, DistributedML
'21) for data-parallel training.

Worker ``r`` of a data-parallel job backpropagates only through the last ``d_r`` of the model's
``L`` blocks; block ``l``'s gradient is the mean over the workers that computed it (a nested set
that grows toward the output), and every worker applies the same update, so workers that
skipped a block still receive it. Depth plans (:mod:`.plans`, registered in
:data:`~phloem.spb.registries.DEPTH_PLANS`) choose the ``d_r``; :mod:`.virtual` runs the
arithmetic for ``W`` workers in one process.

Importing this package is cheap (no torch).
"""

from phloem.spb.registries import DEPTH_PLANS

__all__ = ["DEPTH_PLANS"]
