"""The generic registry and config sections that pick registered components."""

from __future__ import annotations

import math
import sys
import tomllib
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import pytest

from phloem.core.config import Picks, Section, from_dict, to_dict, to_toml
from phloem.core.errors import ConfigError
from phloem.core.registry import NoParams, Registry, as_mapping

SHAPES: Registry[type[Any]] = Registry("shape", "figure.shape")
FILLS: Registry[type[Any]] = Registry("fill", "figure.fill")


@dataclass(frozen=True)
class SquareParams:
    side_m: float = 1.0

    def __post_init__(self) -> None:
        if not self.side_m > 0:
            raise ValueError(f"figure.side_m must be positive, got {self.side_m}")


@SHAPES.register
class Square:
    name: ClassVar[str] = "square"
    description: ClassVar[str] = "four equal sides"
    Params: ClassVar[type[SquareParams]] = SquareParams


@dataclass(frozen=True)
class CircleParams:
    radius_m: float = 1.0
    segments: int = 64


@SHAPES.register
class Circle:
    name: ClassVar[str] = "circle"
    description: ClassVar[str] = "round"
    Params: ClassVar[type[CircleParams]] = CircleParams


@dataclass(frozen=True)
class HatchParams:
    angle_deg: float = 45.0
    colour: str = "black"


@FILLS.register
class Hatch:
    name: ClassVar[str] = "hatch"
    description: ClassVar[str] = "parallel lines"
    Params: ClassVar[type[HatchParams]] = HatchParams
    #: set by the component, not by a config
    fixed_params: ClassVar[dict[str, object]] = {"colour": "black"}


@FILLS.register
class Solid:
    name: ClassVar[str] = "solid"
    description: ClassVar[str] = "no pattern"
    Params: ClassVar[type[NoParams]] = NoParams


@dataclass(frozen=True)
class Figure(Section):
    shape: Annotated[str, Picks(SHAPES, "shape_params")] = "square"
    shape_params: Any = None
    fill: Annotated[str, Picks(FILLS, "fill_params")] = "solid"
    fill_params: Any = None
    label: str = ""


@dataclass(frozen=True)
class Drawing:
    figure: Figure = Figure()
    scale: float = 1.0


def test_get_lists_the_registered_names_and_names_the_field() -> None:
    assert SHAPES.get("circle") is Circle
    assert SHAPES.names() == ("square", "circle")
    assert "circle" in SHAPES and "oval" not in SHAPES
    with pytest.raises(ConfigError) as e:
        SHAPES.get("oval")
    assert e.value.field == "figure.shape"
    assert e.value.allowed == ("square", "circle")
    with pytest.raises(ConfigError, match=r"'--shape'.*unknown shape int 3"):
        SHAPES.get(3, field="--shape")


def test_entries_show_descriptions_and_parameter_defaults() -> None:
    (sq, ci) = SHAPES.entries()
    assert (sq.name, sq.description, sq.params) == (
        "square",
        "four equal sides",
        (("side_m", 1.0),),
    )
    assert ci.params == (("radius_m", 1.0), ("segments", 64))
    assert SHAPES.owners("segments") == ("circle",)
    assert as_mapping(CircleParams(2.0, 8)) == {"radius_m": 2.0, "segments": 8}


def test_register_refuses_incomplete_components_and_taken_names() -> None:
    reg: Registry[type[Any]] = Registry("thing", "thing.name")

    class NoName:
        description = "x"
        Params = NoParams

    class NoDescription:
        name = "a"
        Params = NoParams

    @dataclass
    class Mutable:
        x: int = 0

    class MutableParams:
        name = "b"
        description = "x"
        Params = Mutable

    for bad in (NoName, NoDescription, MutableParams):
        with pytest.raises(TypeError):
            reg.register(bad)

    class First:
        name = "same"
        description = "first"
        Params = NoParams

    class Second:
        name = "same"
        description = "second"
        Params = NoParams

    reg.register(First)
    reg.register(First)  # the same class again (a reload) is fine
    with pytest.raises(ValueError, match="already registered"):
        reg.register(Second)


def test_populate_imports_the_builtin_modules_on_first_lookup(tmp_path: Any) -> None:
    mod = "phloem_test_populate_plugin"
    (tmp_path / f"{mod}.py").write_text(
        "from phloem.core.registry import NoParams\n"
        "from tests_registry_target import REG\n"
        "@REG.register\n"
        "class Late:\n"
        "    name = 'late'\n"
        "    description = 'registered by an imported module'\n"
        "    Params = NoParams\n"
    )
    (tmp_path / "tests_registry_target.py").write_text(
        "from phloem.core.registry import Registry\n"
        f"REG = Registry('late thing', 'x.name', populate=[{mod!r}])\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import tests_registry_target  # type: ignore[import-not-found]

        assert mod not in sys.modules  # nothing imported yet
        assert tests_registry_target.REG.names() == ("late",)
        assert mod in sys.modules
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(mod, None)
        sys.modules.pop("tests_registry_target", None)


def test_a_section_takes_the_picked_components_keys_and_round_trips() -> None:
    d = from_dict(
        Drawing,
        {"figure": {"shape": "circle", "radius_m": 2.5, "fill": "hatch", "angle_deg": 30}},
    )
    assert d.figure.shape == "circle"
    assert d.figure.shape_params == CircleParams(2.5, 64)
    assert d.figure.fill_params == HatchParams(30.0, "black")
    flat = to_dict(d)
    assert flat["figure"] == {
        "shape": "circle",
        "radius_m": 2.5,
        "segments": 64,
        "fill": "hatch",
        "angle_deg": 30.0,
        "label": "",
    }
    assert from_dict(Drawing, tomllib.loads(to_toml(flat))) == d


def test_defaults_fill_the_picked_components_params() -> None:
    assert Figure().shape_params == SquareParams()
    assert Figure(shape="circle").shape_params == CircleParams()
    assert from_dict(Drawing, {}).figure == Figure()
    with pytest.raises(TypeError, match="must be CircleParams"):
        Figure(shape="circle", shape_params=SquareParams())


def test_a_key_of_another_component_is_refused_naming_its_owner() -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(Drawing, {"figure": {"shape": "square", "radius_m": 2.0}})
    assert e.value.field == "figure.radius_m"
    assert "unknown key for shape 'square', fill 'solid'" in str(e.value)
    assert "(a key of shape 'circle')" in str(e.value)
    assert set(e.value.allowed or ()) == {"shape", "fill", "label", "side_m"}
    with pytest.raises(ConfigError, match=r"figure\.colour.*is set by fill = 'hatch'"):
        from_dict(Drawing, {"figure": {"fill": "hatch", "colour": "red"}})
    with pytest.raises(ConfigError, match=r"figure\.shape_params.*unknown key"):
        from_dict(Drawing, {"figure": {"shape_params": {}}})


def test_non_strict_reading_drops_keys_of_unpicked_components_only() -> None:
    old = {"figure": {"shape": "square", "radius_m": 2.0, "segments": 3}}
    assert from_dict(Drawing, old, strict=False).figure == Figure()
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(Drawing, {"figure": {"nobody": 1}}, strict=False)


@pytest.mark.parametrize(
    ("figure", "field", "fragment"),
    [
        ({"shape": "oval"}, "figure.shape", "unknown shape 'oval'"),
        ({"shape": 7}, "figure.shape", "unknown shape int 7"),
        ({"side_m": -1.0}, "figure", "figure.side_m must be positive"),
        ({"side_m": math.nan}, "figure.side_m", "expected a finite number"),
        ({"side_m": math.inf}, "figure.side_m", "expected a finite number"),
        ({"shape": "circle", "segments": "many"}, "figure.segments", "expected an integer"),
    ],
)
def test_bad_values_name_the_field(figure: dict[str, object], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(Drawing, {"figure": figure})
    assert e.value.field == field
    assert fragment in str(e.value)


def test_config_error_can_be_renamed_for_the_users_spelling() -> None:
    e = ConfigError("features", "unknown 'x'", ["full", "sld"]).with_field("--features")
    assert str(e) == "config field '--features': unknown 'x'; allowed: 'full', 'sld'"
