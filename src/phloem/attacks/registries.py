"""The registries of the attacks area: victims, defences and attacks (cheap to import).

A part registers itself in its module; the modules named in ``populate`` are imported on the
first lookup, so adding a part is one new module plus one line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phloem.core.registry import Registry

if TYPE_CHECKING:
    from phloem.attacks.defences.base import Defence
    from phloem.attacks.images import ImageSet
    from phloem.attacks.methods.base import Attack
    from phloem.attacks.victims.base import SplitModel

__all__ = ["ATTACKS", "DEFENCES", "IMAGE_SETS", "VICTIMS"]

#: ``[victim] name``: the split model under attack (:class:`~.victims.base.SplitModel`)
VICTIMS: Registry[type[SplitModel]] = Registry(
    "victim", "victim.name", populate=["phloem.attacks.victims"]
)
#: ``[[defence]] name``: a wrapper of the edge part (:class:`~.defences.base.Defence`)
DEFENCES: Registry[type[Defence]] = Registry(
    "defence", "defence.name", populate=["phloem.attacks.defences"]
)
#: ``[attack] name``: a reconstruction attack (:class:`~.methods.base.Attack`)
ATTACKS: Registry[type[Attack]] = Registry(
    "attack", "attack.name", populate=["phloem.attacks.methods"]
)
#: ``[data] private`` / ``[data] aux``: where images come from (:class:`~.images.ImageSet`)
IMAGE_SETS: Registry[type[ImageSet]] = Registry(
    "image set", "data.images", populate=["phloem.attacks.images"]
)
