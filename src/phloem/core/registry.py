"""Registries of named, self-describing components: the one way to plug a part into phloem.

Every interchangeable part (an FL algorithm, a compressor, a sampler, a data set, an IoT input
source, an evaluation protocol, ...) is a class that declares

- ``name``: the string a config file or a command line picks it by;
- ``description``: one line for listings (``phloem fl list``);
- ``Params``: a frozen dataclass of its own parameters, validated when constructed (units in
  field names), :class:`NoParams` when it has none;

and registers itself with the :class:`Registry` of its kind, usually with a class decorator::

    @ALGORITHMS.register
    @dataclass(frozen=True)
    class FedAvg(Algorithm[...]):
        name: ClassVar[str] = "fedavg"
        description: ClassVar[str] = "Federated Averaging (McMahan et al., 2017)"
        Params: ClassVar[type[NoParams]] = NoParams

Looking a name up gives the class, or a :class:`~phloem.core.errors.ConfigError` that names the
config field and lists the registered names. A registry knows which modules hold its built-in
parts and imports them on first use, so importing a registry is cheap (no torch) and adding a
part is one new module plus one import line in its package.

Parts that live outside phloem are plug-ins: on a registry's first lookup, phloem imports the
modules named by the ``phloem.plugins`` entry-point group of installed distributions and by the
``PHLOEM_PLUGINS`` environment variable (comma-separated module names), so that their
registrations are in place for configs and the command line alike. The registry never builds a part:
each kind's base class says how (``from_params``), because what a part needs besides its
parameters differs by kind (a compressor the dimension, an algorithm its solver).

Model: opacus ``opacus/accountants/registry.py``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar, Generic, TypeVar

from phloem.core.errors import ConfigError

__all__ = [
    "PLUGINS_ENV",
    "PLUGIN_GROUP",
    "Entry",
    "NoParams",
    "Registry",
    "as_mapping",
    "load_plugins",
    "params_of",
]

#: entry-point group whose modules are imported before the first lookup in any registry
PLUGIN_GROUP = "phloem.plugins"
#: environment variable naming more plug-in modules (comma-separated)
PLUGINS_ENV = "PHLOEM_PLUGINS"
_plugins_loaded = False
_plugin_errors: list[str] = []


def load_plugins() -> list[str]:
    """Import the plug-in modules (entry points of :data:`PLUGIN_GROUP`, then those named in
    ``$PHLOEM_PLUGINS``), once per process; the names of those that imported.

    A plug-in that fails to import is skipped, so that the rest of phloem (help screens
    included) still works; :func:`plugin_errors` says which and why, and a lookup of an unknown
    name repeats it.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return []
    _plugins_loaded = True
    names = [ep.value.split(":")[0] for ep in metadata.entry_points(group=PLUGIN_GROUP)]
    names += [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    loaded = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # a plug-in's own bug: say which one and why, go on
            _plugin_errors.append(
                f"plug-in module {name!r} (from {PLUGIN_GROUP} or ${PLUGINS_ENV}) failed to "
                f"import: {type(e).__name__}: {e}"
            )
        else:
            loaded.append(name)
    return loaded


def plugin_errors() -> tuple[str, ...]:
    """Why each plug-in that failed to import did (empty when all imported)."""
    return tuple(_plugin_errors)


E = TypeVar("E")
_C = TypeVar("_C")


@dataclass(frozen=True)
class NoParams:
    """The parameters of a component that has none."""


class Configured:
    """Base of a component that is built from its own ``Params`` and keeps them (``params``).

    Parameters
    ----------
    params
        An instance of the class's ``Params`` (default: ``Params()``).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]] = NoParams
    #: what the component is, in errors ("source", "protocol")
    kind: ClassVar[str] = "component"

    def __init__(self, params: Any = None) -> None:
        self.params = self.Params() if params is None else params
        if not isinstance(self.params, self.Params):
            raise TypeError(f"{self.kind} {self.name!r} takes {self.Params.__name__}")


@dataclass(frozen=True)
class Entry:
    """One registered component as listings show it.

    Attributes
    ----------
    name, description
        As the component declares them.
    params
        Each parameter's name and default (``None`` where it has no default), but for those
        the component fixes itself (its ``fixed_params``).
    """

    name: str
    description: str
    params: tuple[tuple[str, object], ...]


def params_of(params_cls: type[Any]) -> tuple[tuple[str, object], ...]:
    """``(name, default)`` of each init field of a ``Params`` dataclass."""
    out: list[tuple[str, object]] = []
    for f in dataclasses.fields(params_cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            out.append((f.name, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            out.append((f.name, f.default_factory()))
        else:
            out.append((f.name, None))
    return tuple(out)


class Registry(Generic[E]):
    """Components of one kind, by name.

    Parameters
    ----------
    kind
        What the components are, in words (``"algorithm"``); used in errors and listings.
    field
        The config field (or parameter) a name is read from (``"algorithm.name"``); errors of
        :meth:`get` name it unless told otherwise.
    populate
        Modules whose import registers the built-in components; imported on first lookup.
    """

    def __init__(self, kind: str, field: str, *, populate: Sequence[str] = ()) -> None:
        self.kind = kind
        self.field = field
        self._populate = tuple(populate)
        self._populated = not self._populate
        self._entries: dict[str, E] = {}

    def register(self, component: _C) -> _C:
        """Add ``component`` (a class declaring ``name``, ``description`` and ``Params``).

        Usable as a class decorator. Registering the same class again (a module reloaded)
        replaces it; another class under a taken name is a programming error.

        Raises
        ------
        TypeError
            When the class lacks ``name``, ``description`` or a frozen-dataclass ``Params``.
        ValueError
            When another class already holds the name.
        """
        name = getattr(component, "name", None)
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise TypeError(f"{component!r} needs a class attribute `name`: one word")
        description = getattr(component, "description", None)
        if not isinstance(description, str) or not description.strip():
            raise TypeError(f"{self.kind} {name!r} needs a one-line `description`")
        params = getattr(component, "Params", None)
        if not (isinstance(params, type) and dataclasses.is_dataclass(params)):
            raise TypeError(f"{self.kind} {name!r}: `Params` must be a dataclass")
        if not params.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"{self.kind} {name!r}: `Params` must be frozen")
        old = self._entries.get(name)
        if old is not None and _qualname(old) != _qualname(component):
            raise ValueError(
                f"{self.kind} {name!r} is already registered by {_qualname(old)}; "
                f"pick another name for {_qualname(component)}"
            )
        self._entries[name] = component  # type: ignore[assignment]
        return component

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a plug-in unloaded, a test's toy part); unknown names are ignored."""
        self._entries.pop(name, None)

    def _load(self) -> None:
        if not self._populated:
            self._populated = True
            for module in self._populate:
                importlib.import_module(module)
        load_plugins()

    def get(self, name: object, *, field: str | None = None) -> E:
        """The component registered as ``name``.

        Raises
        ------
        ConfigError
            Naming ``field`` (default: the registry's) and listing the registered names.
        """
        self._load()
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        shown = repr(name) if isinstance(name, str) else f"{type(name).__name__} {name!r}"
        problem = f"unknown {self.kind} {shown}"
        if _plugin_errors:
            problem += " (" + "; ".join(_plugin_errors) + ")"
        raise ConfigError(field or self.field, problem, self.names())

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        self._load()
        return tuple(self._entries)

    def entries(self) -> list[Entry]:
        """Every component with its description and parameters, for listings."""
        self._load()
        out = []
        for name, c in self._entries.items():
            fixed = getattr(c, "fixed_params", None) or {}  # set by the part, not a config
            keys = tuple(kv for kv in params_of(c.Params) if kv[0] not in fixed)  # type: ignore[attr-defined]
            out.append(Entry(name, str(getattr(c, "description", "")), keys))
        return out

    def owners(self, key: str) -> tuple[str, ...]:
        """Names of the components whose ``Params`` have a field ``key``."""
        self._load()
        return tuple(
            n
            for n, c in self._entries.items()
            if key in {f.name for f in dataclasses.fields(c.Params)}  # type: ignore[attr-defined]
        )

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def as_mapping(params: object) -> Mapping[str, Any]:
    """The init fields of a ``Params`` instance as a mapping (for ``cls(**as_mapping(p))``)."""
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params) if f.init}  # type: ignore[arg-type]
