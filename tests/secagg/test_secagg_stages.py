"""Tests for :mod:`phloem.secagg.stages`: one stage enum, named by strings, ordered by protocol.

The reference is the protocol's order written out as a list of names.
"""

from __future__ import annotations

import itertools
import json
import operator
import pickle
from collections.abc import Callable

import pytest

from phloem.core.errors import ConfigError
from phloem.secagg import driver, messages
from phloem.secagg.stages import PROTOCOL_STAGES, Stage

ORDER = ["setup", "share_keys", "masked_input", "consistency", "unmask", "done"]


def test_each_stage_is_its_stable_name() -> None:
    assert [s.value for s in Stage] == ORDER
    for s in Stage:
        assert s == s.value and str(s) == s.value and f"{s}" == s.value
        assert {s.value: 1}[s] == 1  # a stage finds its name's entry, and the reverse
    assert list(PROTOCOL_STAGES) == ORDER[:-1] and Stage.DONE not in PROTOCOL_STAGES


@pytest.mark.parametrize(
    "op", [operator.lt, operator.le, operator.gt, operator.ge], ids=lambda f: f.__name__
)
def test_stages_compare_in_protocol_order_not_alphabetically(
    op: Callable[[object, object], bool],
) -> None:
    for a, b in itertools.product(Stage, repeat=2):
        assert op(a, b) == op(ORDER.index(a.value), ORDER.index(b.value)), (a, b)
    assert Stage.SHARE_KEYS < Stage.MASKED_INPUT  # "masked_input" < "share_keys" by letters
    assert sorted(reversed(Stage)) == list(Stage) and min(Stage) is Stage.SETUP
    assert [s.order for s in Stage] == list(range(len(ORDER)))


@pytest.mark.parametrize("op", [operator.lt, operator.ge], ids=lambda f: f.__name__)
def test_ordering_against_a_plain_string_is_refused(op: Callable[[object, object], bool]) -> None:
    with pytest.raises(TypeError, match="cannot order"):
        op(Stage.UNMASK, "setup")


def test_parse_accepts_names_and_members_only_of_protocol_stages() -> None:
    for s in PROTOCOL_STAGES:
        assert Stage.parse(s.value) is s and Stage.parse(s) is s
    for bad in ("done", "Setup", "later", 2, None):
        with pytest.raises(ConfigError) as err:
            Stage.parse(bad, field="aggregation.dropout_stage")
        assert err.value.field == "aggregation.dropout_stage"
        assert err.value.allowed == tuple(ORDER[:-1])


def test_stages_survive_pickle_and_json() -> None:
    for s in Stage:
        assert pickle.loads(pickle.dumps(s)) is s
    assert json.loads(json.dumps({Stage.UNMASK: [Stage.SETUP]})) == {"unmask": ["setup"]}


def test_one_enum_everywhere() -> None:
    assert messages.Stage is Stage
    # the deprecated driver aliases agree with it
    assert list(driver.STAGE_NAMES.values()) == list(PROTOCOL_STAGES)
    assert all(driver.stage_name(s) == s.value for s in PROTOCOL_STAGES)
