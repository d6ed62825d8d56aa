"""``dataclass`` for aido's value classes: the standard one's behaviour, without compiling
code each time a module is imported.

Why: the standard decorator writes each class's ``__init__``, ``__repr__``, ``__eq__``,
``__hash__`` (and, frozen, ``__setattr__``/``__delattr__``) as source text and compiles it
at import: ~0.5 ms a class, ~25 ms of the ~90 ms that ``aido run`` spent importing (it
defines some 50 value classes). Here the standard decorator still collects the fields, so
``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` work unchanged, but
it generates nothing: the methods are closures over the field list that do what the
generated code does (same semantics, same error messages; tests/test_values.py holds each
of aido's value classes against its standard twin).

What it takes: ``frozen`` (the only option aido uses) and ``field(default=...,
default_factory=..., init=..., repr=..., compare=..., hash=...)``. Anything else (other
options, inheritance from a dataclass, ``InitVar``, ``KW_ONLY``, keyword-only fields) is
refused with a TypeError at class creation: use ``dataclasses.dataclass`` for those.
``inspect.signature`` of such a class shows ``(*args, **kwargs)``.
"""

from __future__ import annotations

import dataclasses
import inspect  # imported by dataclasses anyway
from _thread import get_ident
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError, field
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["dataclass", "field"]

T = TypeVar("T", bound=type)


@overload
def dataclass(cls: T, /) -> T: ...
@overload
def dataclass(*, frozen: bool = False) -> Callable[[T], T]: ...


@dataclass_transform(field_specifiers=(field, Field))
def dataclass(cls: T | None = None, /, *, frozen: bool = False) -> T | Callable[[T], T]:
    """``dataclasses.dataclass(cls, frozen=frozen)``, faster to create (see the module's doc)."""

    def wrap(cls: T) -> T:
        return _process(cls, frozen)

    return wrap if cls is None else wrap(cls)


def _process(cls: T, frozen: bool) -> T:
    if any(hasattr(base, "__dataclass_fields__") for base in cls.__mro__[1:]):
        raise TypeError(f"{cls.__name__}: aido.values cannot inherit a dataclass; use dataclasses")
    for name, annotation in inspect.get_annotations(cls).items():
        if "InitVar" in str(annotation) or "KW_ONLY" in str(annotation):
            raise TypeError(f"{cls.__name__}.{name}: aido.values has no InitVar/KW_ONLY; use dataclasses")
    hash_attr = cls.__dict__.get("__hash__", MISSING)
    explicit_hash = not (hash_attr is MISSING or (hash_attr is None and "__eq__" in cls.__dict__))
    documented = bool(cls.__doc__)
    if not documented:
        cls.__doc__ = "-"  # written below: the standard one's inspect.signature would be ours
    # The standard decorator, told to generate nothing: it collects and checks the fields,
    # sets class attributes for defaults, __dataclass_fields__ and __match_args__.
    dataclasses.dataclass(cls, init=False, repr=False, eq=False)  # the same class (no slots)
    fields = dataclasses.fields(cls)
    for f in fields:
        if f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: aido.values has no keyword-only fields")
    _check_default_order(cls, fields)

    _add(cls, "__init__", _init(cls, fields, frozen))
    _add(cls, "__repr__", _repr(tuple(f.name for f in fields if f.repr)))
    _add(cls, "__eq__", _eq(tuple(f.name for f in fields if f.compare)))
    if frozen:
        names = tuple(f.name for f in fields)
        for name, method in (
            ("__setattr__", _frozen_setattr(cls, names)),
            ("__delattr__", _frozen_delattr(cls, names)),
        ):
            if name in cls.__dict__:
                raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
            _add(cls, name, method)
    # The standard table for eq=True, unsafe_hash=False: frozen adds a hash of the compared
    # fields, mutable makes instances unhashable; a __hash__ of the class's own is kept.
    if not explicit_hash:
        hashed = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
        if frozen:
            _add(cls, "__hash__", _hash(hashed), replace=True)
        else:
            cls.__hash__ = None  # type: ignore[assignment]
    if not documented:
        cls.__doc__ = f"{cls.__name__}({_signature(fields)})"
    return cls


def _signature(fields: tuple[Field[Any], ...]) -> str:
    """The parameters as the standard decorator's __doc__ shows them (from inspect.signature)."""
    shown = []
    for f in fields:
        if not f.init:
            continue
        text = (
            f"{f.name}: {f.type!r}"
            if isinstance(f.type, str)
            else f"{f.name}: {getattr(f.type, '__name__', f.type)}"
        )
        if f.default is not MISSING:
            text += f" = {f.default!r}"
        elif f.default_factory is not MISSING:
            text += " = <factory>"
        shown.append(text)
    return ", ".join(shown)


def _add(cls: type, name: str, method: Callable[..., Any], *, replace: bool = False) -> None:
    if replace or name not in cls.__dict__:
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        setattr(cls, name, method)


def _check_default_order(cls: type, fields: tuple[Field[Any], ...]) -> None:
    seen_default = False
    for f in fields:
        if not f.init:
            continue
        if f.default is not MISSING or f.default_factory is not MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")


def _init(cls: type, fields: tuple[Field[Any], ...], frozen: bool) -> Callable[..., None]:
    names = tuple(f.name for f in fields if f.init)
    positions = {name: i for i, name in enumerate(names)}
    # Those without a default come first (checked above), so a prefix of names.
    required = tuple(
        f.name for f in fields if f.init and f.default is MISSING and f.default_factory is MISSING
    )
    # (name, takes an argument, default, factory) in field order, as the generated __init__ sets them.
    plan: tuple[tuple[str, bool, Any, Any], ...] = tuple(
        (f.name, f.init, f.default, f.default_factory) for f in fields
    )
    post_init = hasattr(cls, "__post_init__")
    qualname = f"{cls.__qualname__}.__init__"
    # Python's words for too many arguments (self counts).
    least, most = len(required) + 1, len(names) + 1
    too_many = (
        f"from {least} to {most} positional arguments"
        if least < most
        else f"{most} positional argument{'s' if most != 1 else ''}"
    )
    setter = object.__setattr__ if frozen else setattr

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{qualname}() takes {too_many} but {len(args) + 1} were given")
        for key in kwargs:
            at = positions.get(key)
            if at is None:
                raise TypeError(f"{qualname}() got an unexpected keyword argument {key!r}")
            if at < len(args):
                raise TypeError(f"{qualname}() got multiple values for argument {key!r}")
        # As Python binds arguments: every one is checked before any default factory runs.
        missing = [name for name in required[len(args) :] if name not in kwargs]
        if missing:
            raise TypeError(f"{qualname}() missing {len(missing)} required positional {_listed(missing)}")
        for name, takes, default, factory in plan:
            if takes:
                at = positions[name]
                if at < len(args):
                    value = args[at]
                elif name in kwargs:
                    value = kwargs[name]
                elif default is not MISSING:
                    value = default
                else:
                    value = factory()
            elif factory is not MISSING:
                value = factory()
            elif default is not MISSING:
                value = default
            else:
                continue
            setter(self, name, value)
        if post_init:
            self.__post_init__()

    return __init__


def _listed(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    if len(quoted) == 1:
        return f"argument: {quoted[0]}"
    return "arguments: " + (", ".join(quoted[:-1]) + (", and " if len(quoted) > 2 else " and ") + quoted[-1])


def _repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    running: set[tuple[int, int]] = set()  # (object, thread): a value that holds itself shows "..."

    def __repr__(self: Any) -> str:
        key = id(self), get_ident()
        if key in running:
            return "..."
        running.add(key)
        try:
            shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
            return f"{self.__class__.__qualname__}({shown})"
        finally:
            running.discard(key)

    return __repr__


def _eq(names: tuple[str, ...]) -> Callable[[Any, object], Any]:
    def __eq__(self: Any, other: object) -> Any:
        if other.__class__ is self.__class__:
            return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)
        return NotImplemented

    return __eq__


def _hash(names: tuple[str, ...]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in names))

    return __hash__


def _frozen_setattr(owner: type[Any], names: tuple[str, ...]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is owner or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(owner, self).__setattr__(name, value)

    return __setattr__


def _frozen_delattr(owner: type[Any], names: tuple[str, ...]) -> Callable[[Any, str], None]:
    def __delattr__(self: Any, name: str) -> None:
        if type(self) is owner or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(owner, self).__delattr__(name)

    return __delattr__
