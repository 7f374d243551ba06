"""The client mod's guard against replays, and the workflow's construction-time checks.

A node's round state lives in its ``Context.state`` between messages. A second set-up of the
round in progress (a replay, or a server bug) must be refused with a clear error and must not
touch that state; the set-up of a *new* round must be accepted even when an older round never
finished on this node (its server gave up on it, say).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
pytest.importorskip("flwr")

from flwr.app import Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from phloem.core.errors import ConfigError, ProtocolError
from phloem.secagg.flower import (
    DuplicateSetupError,
    PhloemSecAggWorkflow,
    _records,
    _state,
    phloem_secagg_mod,
)
from phloem.secagg.messages import KeysAdvert, KeysBroadcast, RoundConfig, Setup, Stage, decode

NODE, PEERS = 11, (12, 13)


def _setup(round_id: int) -> Setup:
    config = RoundConfig(round_id=round_id, dim=4, modulus_bits=32, threshold=2, num_clients=3)
    return Setup(round_id=round_id, config=config, client=NODE, neighbours={12: 2, 13: 3}, point=1)


def _deliver(msg: Any, stage: Stage, ctx: Context) -> Any:
    """Run ``msg`` through the mod as node ``NODE``; the decoded phloem reply."""
    content = RecordDict({_records.RECORD_KEY: _records.pack(msg, stage)})
    flower_msg = Message(
        content, dst_node_id=NODE, message_type=MessageType.TRAIN, group_id=str(msg.round_id)
    )
    reply = phloem_secagg_mod(flower_msg, ctx, _no_app)
    record = _records.find(reply.content)
    assert record is not None
    return decode(_records.payload(record))


def _no_app(msg: Message, ctx: Context) -> Message:  # pragma: no cover - never reached
    raise AssertionError("the wrapped app is not called before the masked input")


def _context() -> Context:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, NODE, 1
    return Context(run_id=1, node_id=NODE, node_config={}, state=RecordDict(), run_config={})


def _stored_bytes(ctx: Context) -> bytes:
    data = ctx.state.config_records[_state.STATE_KEY]["client"]
    assert isinstance(data, bytes)
    return data


def test_a_second_setup_of_the_round_in_progress_is_refused_and_changes_nothing() -> None:
    ctx = _context()
    advert = _deliver(_setup(1), Stage.SETUP, ctx)
    assert isinstance(advert, KeysAdvert)
    before = _stored_bytes(ctx)
    with pytest.raises(DuplicateSetupError, match="second set-up for round 1"):
        _deliver(_setup(1), Stage.SETUP, ctx)
    assert _stored_bytes(ctx) == before  # the round's keys are still the first set-up's
    stored = _state.load(ctx.state)
    assert stored is not None and stored[0].stage is Stage.SHARE_KEYS


def test_a_setup_of_a_new_round_is_accepted_after_an_unfinished_one() -> None:
    ctx = _context()
    first = _deliver(_setup(1), Stage.SETUP, ctx)
    second = _deliver(_setup(2), Stage.SETUP, ctx)  # round 1 never finished here
    assert isinstance(second, KeysAdvert) and second.round_id == 2
    assert second.c_public != first.c_public  # fresh keys for the new round
    stored = _state.load(ctx.state)
    assert stored is not None and stored[0].config is not None
    assert stored[0].config.round_id == 2


def test_a_stale_message_of_another_round_leaves_the_round_in_progress_alone() -> None:
    ctx = _context()
    _deliver(_setup(2), Stage.SETUP, ctx)
    before = _stored_bytes(ctx)
    with pytest.raises(ProtocolError, match="round 1 while round 2 is in progress"):
        _deliver(KeysBroadcast(round_id=1, keys={}), Stage.SHARE_KEYS, ctx)
    assert _stored_bytes(ctx) == before


def test_the_client_side_imports_no_server_code() -> None:
    """A ClientApp process imports the mod, not the workflow, the server or the graph search.

    (``import flwr`` itself loads ``flwr.server``: every Flower process pays for it.)"""
    code = (
        "import sys\n"
        "from phloem.secagg.flower import phloem_secagg_mod\n"
        "bad = [m for m in sys.modules if m.startswith(('phloem.secagg.flower.workflow', "
        "'phloem.secagg.flower._transport', 'phloem.secagg.graph', 'phloem.secagg.server', "
        "'phloem.secagg.transport', 'scipy'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        ({"num_shares": 6, "threshold": 3}, "threshold", "4..6"),
        ({"num_shares": 5, "threshold": 2}, "threshold", "3..5"),
        ({"levels": 2**31}, "levels", "smallest round"),
        ({"modulus_bits": 16, "levels": 2**15}, "levels", "smallest round"),
        ({"poll_interval_s": 0.0}, "poll_interval_s", "poll"),
        ({"timeout_s": "5"}, "timeout_s", "seconds"),
    ],
)
def test_what_no_sample_can_fix_is_refused_at_construction(
    kwargs: dict[str, Any], field: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        PhloemSecAggWorkflow(**kwargs)
    assert info.value.field == field


def test_what_depends_on_the_sample_is_still_accepted_at_construction() -> None:
    """These work for some sample sizes, so only a round can refuse them."""
    PhloemSecAggWorkflow(num_shares=6, threshold=4)  # fine from 6 clients up
    PhloemSecAggWorkflow(levels=2**30)  # fine for up to 3 clients
    PhloemSecAggWorkflow(dropout=0.3, corrupt=0.3)  # fine for enough clients
