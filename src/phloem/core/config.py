"""Frozen, validated configuration objects built from TOML and ``--set key=value`` overrides.

Configs are dataclasses; :func:`from_dict` checks every key and value against the dataclass's
type hints and raises :class:`~phloem.core.errors.ConfigError` naming the dotted field and the
allowed values (unknown keys list the known ones; enum fields list their members; NaN and
infinities are refused).

A :class:`Section` may *pick* registered components: a field annotated
``Annotated[str, Picks(REGISTRY, "params")]`` holds a component's name, and the sibling field
``params`` its validated parameters. In the file the parameters sit in the section beside the
name, e.g. ``[algorithm] name = "diana"  alpha = 0.5``: each key goes to the picked component
whose ``Params`` has it, and a key that no picked component has is refused, naming the
components it would belong to.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import math
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from phloem.core.errors import ConfigError
from phloem.core.registry import Registry

__all__ = [
    "Picks",
    "Section",
    "apply_overrides",
    "expand_grid",
    "from_dict",
    "load_toml",
    "params_for",
    "parse_override",
    "read_config",
    "to_dict",
    "to_toml",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Picks:
    """Marks a section field as the name of a component of ``registry``.

    ``params`` names the sibling field that holds the component's ``Params`` instance. A
    component may declare ``fixed_params`` (a mapping): parameters it sets itself, which a
    config may not.
    """

    registry: Registry[Any]
    params: str


_PICKS: dict[type, dict[str, Picks]] = {}


def _picks(cls: type) -> dict[str, Picks]:
    """``{field: Picks}`` of a dataclass (cached: type hints are slow to evaluate)."""
    if cls not in _PICKS:
        hints = typing.get_type_hints(cls, include_extras=True)
        out: dict[str, Picks] = {}
        for f in dataclasses.fields(cls):
            hint = hints.get(f.name)
            if hint is not None and typing.get_origin(hint) is typing.Annotated:
                marks = [m for m in hint.__metadata__ if isinstance(m, Picks)]
                if marks:
                    out[f.name] = marks[0]
        _PICKS[cls] = out
    return _PICKS[cls]


def _fixed(component: object) -> Mapping[str, Any]:
    fixed = getattr(component, "fixed_params", None)
    return fixed if isinstance(fixed, Mapping) else {}


def _param_keys(component: object) -> set[str]:
    params = component.Params  # type: ignore[attr-defined]
    return {f.name for f in dataclasses.fields(params) if f.init} - set(_fixed(component))


def params_for(component: object, options: Mapping[str, Any], *, prefix: str = "") -> Any:
    """``component``'s ``Params`` from the entries of ``options`` it has (validated); the
    others are left for other components. Its ``fixed_params`` are its own."""
    keys = _param_keys(component)
    mine = {k: v for k, v in options.items() if k in keys}
    return from_dict(component.Params, {**mine, **_fixed(component)}, prefix=prefix)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Section:
    """Base of config sections that pick registered components (see :class:`Picks`).

    Constructed in Python without parameters, a picked component gets its default ``Params``;
    parameters of another component's type are a programming error. Subclasses with their own
    ``__post_init__`` call ``super().__post_init__()``.
    """

    def __post_init__(self) -> None:
        for key, pick in _picks(type(self)).items():
            component = pick.registry.get(getattr(self, key))
            params_cls = component.Params
            params = getattr(self, pick.params)
            if params is None:
                object.__setattr__(self, pick.params, params_cls(**_fixed(component)))
            elif not isinstance(params, params_cls):
                raise TypeError(
                    f"{type(self).__name__}.{pick.params} must be {params_cls.__name__} for "
                    f"{pick.registry.kind} {getattr(self, key)!r}, got {type(params).__name__}"
                )


def _coerce(value: Any, tp: Any, field: str, strict: bool = True) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, field, strict)
            except ConfigError as e:
                errors.append(e)
        raise errors[0] if errors else ConfigError(field, f"got {value!r}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [m.value for m in tp]
        if isinstance(value, tp):
            return value
        if isinstance(value, str) and value.lower() in allowed:
            return tp(value.lower())
        raise ConfigError(field, f"unknown value {value!r}", allowed)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(field, f"expected a list, got {type(value).__name__} {value!r}")
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, inner, f"{field}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise ConfigError(field, f"expected a table, got {value!r}")
        return from_dict(tp, value, prefix=field, strict=strict)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(field, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(field, f"expected an integer, got {type(value).__name__} {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(field, f"expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(field, f"expected a number, got {type(value).__name__} {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(field, f"expected a string, got {type(value).__name__} {value!r}")
    raise TypeError(f"unsupported config type {tp!r} for {field}")


def from_dict(cls: type[T], data: Mapping[str, Any], *, prefix: str = "", strict: bool = True) -> T:
    """Build dataclass ``cls`` from ``data``, validating every key and value.

    Parameters
    ----------
    cls
        A dataclass; a :class:`Section` also takes its picked components' parameters.
    data
        Keys and values, as read from TOML.
    prefix
        Dotted path of ``data`` in the whole config, for error messages.
    strict
        ``False`` drops, instead of refusing, a key that belongs to another component of the
        same kind than the one picked (for configs written by older versions, which kept
        every component's keys in every section).

    Raises
    ------
    ConfigError
        For an unknown key (naming the known ones), a value of the wrong type, an enum value
        outside its members, an unknown component, or a value the dataclass's own
        ``__post_init__`` rejects.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    picks = _picks(cls)
    companions = {p.params for p in picks.values()}
    kwargs: dict[str, Any] = {}
    chosen: dict[str, tuple[Picks, Any, dict[str, Any]]] = {}
    for key, pick in picks.items():
        name = data.get(key, fields[key].default)
        component = pick.registry.get(name, field=_dot(prefix, key))
        if key in data:
            kwargs[key] = name
        chosen[key] = (pick, component, {})
    for key, value in data.items():
        dotted = _dot(prefix, key)
        if key in picks:
            continue
        if key in fields and key not in companions:
            kwargs[key] = _coerce(value, hints[key], dotted, strict)
            continue
        owners = [sub for _, c, sub in chosen.values() if key in _param_keys(c)]
        for sub in owners:
            sub[key] = value
        if not owners:
            _unknown_key(key, dotted, fields, companions, chosen, strict)
    for pick, component, sub in chosen.values():
        sub.update(_fixed(component))
        kwargs[pick.params] = from_dict(component.Params, sub, prefix=prefix)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        # a dataclass names its own field ("lr", "train.lr"); say where it sits in this
        # config ("victim.finetune.lr"), so the user finds the key they wrote
        last = e.field.rsplit(".", 1)[-1]
        if prefix and last in fields and e.field != _dot(prefix, last):
            raise e.with_field(_dot(prefix, last)) from None
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(prefix or cls.__name__, str(e)) from None


def _dot(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _unknown_key(
    key: str,
    dotted: str,
    fields: Mapping[str, Any],
    companions: set[str],
    chosen: Mapping[str, tuple[Picks, Any, dict[str, Any]]],
    strict: bool,
) -> None:
    """Refuse ``key`` (or, when not ``strict``, let a key of an unpicked component pass)."""
    allowed = {k for k in fields if k not in companions}
    for _, component, _ in chosen.values():
        allowed |= _param_keys(component)
    for component_key, (_pick, component, _) in chosen.items():
        if key in _fixed(component):
            raise ConfigError(
                dotted, f"is set by {component_key} = {component.name!r}", sorted(allowed)
            )
    belongs = [
        f"{pick.registry.kind} {', '.join(repr(n) for n in pick.registry.owners(key))}"
        for pick, _, _ in chosen.values()
        if pick.registry.owners(key)
    ]
    if belongs and not strict:
        return
    picked = ", ".join(f"{p.registry.kind} {c.name!r}" for p, c, _ in chosen.values())
    problem = f"unknown key for {picked}" if picked else "unknown key"
    if belongs:
        problem += f" (a key of {'; '.join(belongs)})"
    raise ConfigError(dotted, problem, sorted(allowed))


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain ``dict`` (enums as their values, tuples as lists) of a config dataclass.

    A picked component's parameters sit beside its name, as in the file.
    """

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            picks = _picks(type(v))
            companions = {p.params for p in picks.values()}
            out: dict[str, Any] = {}
            for f in dataclasses.fields(v):
                if f.name in companions:
                    continue
                value = getattr(v, f.name)
                out[f.name] = conv(value)
                if f.name in picks:
                    component = picks[f.name].registry.get(value)
                    params = getattr(v, picks[f.name].params)
                    fixed = _fixed(component)
                    for pf in dataclasses.fields(params):
                        if pf.init and pf.name not in fixed:
                            out[pf.name] = conv(getattr(params, pf.name))
            return out
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v

    out = conv(obj)
    if not isinstance(out, dict):
        raise TypeError("to_dict needs a dataclass instance")
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not isinstance(v, float) or v == v else "nan"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML text for a mapping: scalars first, then one table per nested mapping (``[a]``,
    ``[a.b]``, at any depth) and an array of tables (``[[a]]``) per list of mappings.

    ``None`` values are written as comments, since TOML has no null.
    """
    return "\n".join(_toml_lines(data, "")).lstrip("\n") + "\n"


def _is_tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _toml_lines(data: Mapping[str, Any], prefix: str) -> list[str]:
    lines: list[str] = []
    nested = []
    for k, v in data.items():
        if isinstance(v, Mapping) or _is_tables(v):
            nested.append((k, v))
        elif v is None:
            lines.append(f"# {k} = (unset)")
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for k, v in nested:
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            lines.append(f"\n[{name}]")
            lines += _toml_lines(v, f"{name}.")
        else:
            for table in v:
                lines.append(f"\n[[{name}]]")
                lines += _toml_lines(table, f"{name}.")
    return lines


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file (a clear error names the file and the syntax problem)."""
    if not path.is_file():
        raise ConfigError("config", f"no config file at {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config", f"{path} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            "config", f"{path} is not a TOML text file (not UTF-8 at byte {e.start})"
        ) from None
    except OSError as e:  # a folder, no permission
        raise ConfigError("config", f"cannot read {path}: {e.strerror or e}") from None


def read_config(cls: type[T], path: str | Path | None, overrides: Sequence[str] = ()) -> T:
    """The ``cls`` config of TOML file ``path`` (``None``: the defaults) with ``--set``
    ``overrides`` applied, validated.

    Raises
    ------
    ConfigError
        Naming the field, for an unknown key, a bad value or an unreadable file.
    """
    data: dict[str, Any] = load_toml(Path(path)) if path is not None else {}
    return from_dict(cls, apply_overrides(data, list(overrides), cls))


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=value`` (the value as a TOML literal, else as a bare string)."""
    if "=" not in text:
        raise ConfigError(text, "an override must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(text, "empty key in override")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def apply_overrides(
    data: dict[str, Any], overrides: list[str], cls: type | None = None
) -> dict[str, Any]:
    """A copy of ``data`` with each ``a.b=value`` override applied.

    With the config class ``cls``: an override that switches a section's picked component
    (``--set algorithm.name=dcgd`` on a file that picks ``diana``) drops the file's keys that
    belong only to the component switched away from (``alpha``), as a sweep over components
    needs; keys the overrides set are always kept, and validated.
    """
    out: dict[str, Any] = copy.deepcopy(dict(data))  # the caller's nested tables stay as they were
    touched: set[tuple[str, ...]] = set()
    for text in overrides:
        path, value = parse_override(text)
        node: Any = out
        for part in path[:-1]:
            if isinstance(node, list):  # an array of tables: ``defences.0.sigma``
                node = node[_list_index(node, part, path)]
                continue
            child = node.setdefault(part, {})
            if not isinstance(child, (dict, list)):
                raise ConfigError(".".join(path), f"'{part}' is a value, not a section")
            node = child
        if isinstance(node, list):
            node[_list_index(node, path[-1], path)] = value
        else:
            node[path[-1]] = value
        touched.add(tuple(path))
    if cls is not None:
        _forget_switched(cls, data, out, touched)
    return out


def _list_index(items: list[Any], part: str, path: list[str]) -> int:
    """``part`` as an index into an array of tables, or a :class:`ConfigError` naming the path."""
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(
            ".".join(path),
            f"no entry {part!r} in a list of {len(items)}",
            [str(i) for i in range(len(items))],
        )
    return int(part)


def _forget_switched(
    cls: type, before: Mapping[str, Any], after: dict[str, Any], touched: set[tuple[str, ...]]
) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        section_cls = hints.get(f.name)
        old_s, new_s = before.get(f.name), after.get(f.name)
        if not (isinstance(section_cls, type) and issubclass(section_cls, Section)):
            continue
        if not (isinstance(old_s, Mapping) and isinstance(new_s, dict)):
            continue
        own = {g.name for g in dataclasses.fields(section_cls)}
        for key, pick in _picks(section_cls).items():
            old, new = old_s.get(key), new_s.get(key)
            if (f.name, key) not in touched or old == new:
                continue
            if old not in pick.registry or new not in pick.registry:
                continue  # an unknown name is reported by validation
            stale = _param_keys(pick.registry.get(old)) - _param_keys(pick.registry.get(new))
            for k in list(new_s):
                if k in stale and k not in own and (f.name, k) not in touched:
                    del new_s[k]


def expand_grid(grid: Sequence[str]) -> list[list[str]]:
    """``["a.b=1,2", "c.d=x,y"]`` -> every combination as a list of ``key=value`` overrides
    (a sweep's grid; ``[[]]`` for no axis).

    Raises
    ------
    ConfigError
        Naming the axis, when it is not ``section.key=v1,v2,...`` or has no value.
    """
    import itertools

    axes: list[list[str]] = []
    for item in grid:
        if "=" not in item:
            raise ConfigError(item, "a grid axis must look like section.key=v1,v2,...")
        key, values = item.split("=", 1)
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not choices:
            raise ConfigError(key, "a grid axis needs at least one value")
        axes.append([f"{key.strip()}={v}" for v in choices])
    return [list(combo) for combo in itertools.product(*axes)] if axes else [[]]
