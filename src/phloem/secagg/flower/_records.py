"""How phloem's protocol messages ride inside Flower messages (shared by workflow and mod).

Every phloem message travels as its wire bytes (:func:`phloem.secagg.messages.encode`) in one
``bytes`` value of a Flower :class:`~flwr.app.ConfigRecord` stored under :data:`RECORD_KEY` in
the message's :class:`~flwr.app.RecordDict`. A ``ConfigRecord`` bytes value is carried as a raw
protobuf ``bytes`` field, so a masked input of ``d`` entries in Z_(2^32) costs ``4 d`` bytes
plus a few dozen bytes of framing -- no per-array ``.npy`` header, no base64.

Record fields:

``stage`` (str)
    The protocol stage the message belongs to (``setup``, ``share_keys``, ``masked_input``,
    ``consistency``, ``unmask``); lets other mods (logging, fault injection) see the stage
    without decoding.
``message`` (bytes)
    The phloem wire bytes.
``clip``, ``levels``, ``max_weight`` (float, int, float)
    Only on the server's masked-input request: the quantiser the client must use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flwr.app import ConfigRecord, RecordDict

from phloem.core.errors import ProtocolError
from phloem.secagg.messages import Message, decode, encode
from phloem.secagg.quantize import Quantizer
from phloem.secagg.stages import Stage

RECORD_KEY = "phloem.secagg"
"""Key of the :class:`~flwr.app.ConfigRecord` that carries phloem's secure aggregation."""

LOGGER = logging.getLogger("flwr").getChild("phloem")


@dataclass(frozen=True)
class QuantizerSpec:
    """The quantiser parameters the server hands to clients with the masked-input request."""

    clip: float
    levels: int
    max_weight: float

    def build(self, modulus_bits: int) -> Quantizer:
        """The :class:`~phloem.secagg.quantize.Quantizer` for a ring of ``modulus_bits``."""
        return Quantizer(self.clip, self.levels, modulus_bits, self.max_weight)


def pack(msg: Message, stage: Stage, quantizer: QuantizerSpec | None = None) -> ConfigRecord:
    """The ``ConfigRecord`` carrying ``msg`` (and, for the masked input, the quantiser)."""
    record = ConfigRecord({"stage": stage.value, "message": encode(msg)})
    if quantizer is not None:
        record["clip"] = float(quantizer.clip)
        record["levels"] = int(quantizer.levels)
        record["max_weight"] = float(quantizer.max_weight)
    return record


def find(content: RecordDict) -> ConfigRecord | None:
    """The phloem record of a Flower message's content, or ``None`` when it has none."""
    return content.config_records.get(RECORD_KEY)


def payload(record: ConfigRecord) -> bytes:
    """The phloem wire bytes in ``record``; :class:`ProtocolError` when there are none."""
    data = record.get("message")
    if not isinstance(data, bytes):
        raise ProtocolError(f"the '{RECORD_KEY}' record has no 'message' bytes")
    return data


def unpack(record: ConfigRecord) -> Message:
    """The phloem message in ``record``; :class:`ProtocolError` when it is malformed."""
    return decode(payload(record))


def quantizer_of(record: ConfigRecord) -> QuantizerSpec:
    """The quantiser sent with a masked-input request; :class:`ProtocolError` when absent."""
    clip, levels, max_weight = (record.get(k) for k in ("clip", "levels", "max_weight"))
    if not (isinstance(clip, float) and isinstance(levels, int) and isinstance(max_weight, float)):
        raise ProtocolError(
            f"the masked-input request lacks its quantiser (clip={clip!r}, levels={levels!r}, "
            f"max_weight={max_weight!r}): server and client run different phloem versions?"
        )
    return QuantizerSpec(float(clip), int(levels), float(max_weight))
