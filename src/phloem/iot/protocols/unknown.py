"""``unknown``: how often a device absent from training is flagged unknown.

When the test days hold devices never seen in training, one identifier trained on every
training device scores those (:func:`~phloem.iot.evaluate.unseen_devices`); otherwise each
training device is held out in turn (:func:`~phloem.iot.evaluate.leave_one_device_out`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.core.errors import ConfigError
from phloem.iot.protocols.base import PROTOCOLS, DaySplit, EvaluationProtocol, Setup
from phloem.iot.protocols.reports import UnknownReport

__all__ = ["Unknown", "UnknownParams"]


@dataclass(frozen=True)
class UnknownParams(DaySplit):
    """The day split of :class:`~phloem.iot.protocols.base.DaySplit`, and

    Attributes
    ----------
    target_false_unknown
        Share of known devices' events the detectors may flag, in [0, 1).
    """

    target_false_unknown: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.target_false_unknown < 1.0:
            raise ConfigError(
                "target_false_unknown", f"{self.target_false_unknown} is not in [0, 1)"
            )


@PROTOCOLS.register
class Unknown(EvaluationProtocol):
    """Unknown-device detection: new devices of the test days, else leave one device out."""

    name: ClassVar[str] = "unknown"
    description: ClassVar[str] = "leave one device out; or the test days' new devices"
    Params: ClassVar[type[UnknownParams]] = UnknownParams
    params: UnknownParams

    def run(self, setup: Setup) -> UnknownReport:
        from phloem.iot.evaluate import leave_one_device_out, unseen_devices

        p = self.params
        s = p.split(setup.events)
        known = {str(e.device) for e in s.train}
        new_devices = sorted({str(e.device) for e in s.test} - known)
        # genuinely new devices in the test days: score those
        score = unseen_devices if new_devices else leave_one_device_out
        scores = tuple(
            x
            for w in p.windows_s
            for x in score(
                s.train,
                s.test,
                w,
                spec=setup.spec,
                model=setup.model,
                target_false_unknown=p.target_false_unknown,
            )
        )
        split = f"{s.description}; {len(new_devices)} new devices" if new_devices else s.description
        return UnknownReport(split, scores)
