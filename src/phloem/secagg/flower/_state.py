"""Keep a :class:`~phloem.secagg.client.SecAggClient` in a Flower node's ``Context.state``.

A phloem client lives for one round, across four or five Flower messages. Flower may run
each message in a different process (a Ray actor in simulation, a fresh ``ClientApp``
process in deployment), so a module-level dict would lose it; the only thing Flower carries
from one message to the next is the node's ``Context.state`` (a ``RecordDict`` that never
leaves the node). The client is therefore pickled into one ``bytes`` value of a
``ConfigRecord`` there, the same place Flower's own ``secaggplus_mod`` keeps its secret keys.

Unpickling runs only on bytes this node wrote itself, but it is restricted anyway: it may only
rebuild classes from :mod:`phloem.secagg`, numpy arrays and dtypes, the ``os.urandom`` byte
source, and Ed25519 keys (signing keys of the optional consistency check, which
``cryptography`` does not pickle by itself).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from flwr.app import ConfigRecord, RecordDict

from phloem.core.errors import ProtocolError
from phloem.secagg.client import SecAggClient
from phloem.secagg.messages import RoundConfig

STATE_KEY = "phloem.secagg.state"

InputFn = Callable[[RoundConfig], np.ndarray]


class InputSlot:
    """The client's input function, filled in only while the masked input is computed.

    A :class:`SecAggClient` is made at set-up, long before the model is trained, and is
    pickled between messages; it gets this slot as its input function. The mod points
    :attr:`fn` at the training closure for the one call that needs it and clears it again,
    so nothing unpicklable is left in the state.
    """

    def __init__(self) -> None:
        self.fn: InputFn | None = None

    def __call__(self, config: RoundConfig) -> np.ndarray:
        if self.fn is None:
            raise ProtocolError("the client's input was requested outside the masked-input stage")
        return self.fn(config)

    def __getstate__(self) -> dict[str, Any]:
        return {"fn": None}


def _ed25519_from_raw(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Ed25519PrivateKey):
            raw = obj.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            return _ed25519_from_raw, (raw,)
        return NotImplemented


_ALLOWED: dict[str, set[str]] = {
    "numpy": {"dtype", "ndarray"},
    "numpy._core.numeric": {"_frombuffer"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.numeric": {"_frombuffer"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "posix": {"urandom"},
    "nt": {"urandom"},
    "os": {"urandom"},
    __name__: {"_ed25519_from_raw", "InputSlot"},
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        if module.startswith("phloem.secagg."):
            obj = super().find_class(module, name)
            if isinstance(obj, type):
                return obj
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a phloem client state")


def save(state: RecordDict, client: SecAggClient, slot: InputSlot) -> None:
    """Store ``client`` (whose input function is ``slot``) in a node's ``Context.state``."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump((client, slot))
    state.config_records[STATE_KEY] = ConfigRecord({"client": buf.getvalue()})


def load(state: RecordDict) -> tuple[SecAggClient, InputSlot] | None:
    """The client stored by :func:`save`, or ``None`` when this node has none."""
    record = state.config_records.get(STATE_KEY)
    data = None if record is None else record.get("client")
    if not isinstance(data, bytes):
        return None
    try:
        client, slot = _Unpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
        raise ProtocolError(
            f"this node's stored secure-aggregation state is unreadable ({exc}); "
            "it drops out of the round"
        ) from exc
    if not isinstance(client, SecAggClient) or not isinstance(slot, InputSlot):
        raise ProtocolError("this node's stored secure-aggregation state is not a phloem client")
    return client, slot


def clear(state: RecordDict) -> None:
    """Forget this node's client (round over, or dropped out)."""
    if STATE_KEY in state.config_records:
        del state.config_records[STATE_KEY]
