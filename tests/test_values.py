"""aido.values.dataclass against dataclasses.dataclass: every aido value class made with it
behaves as its twin made by the standard decorator from the same fields (pure logic)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any, ClassVar

import pytest

import aido
from aido.values import dataclass, field


def _value_classes() -> list[type]:
    """Every class in aido made by aido.values.dataclass (modules that import it)."""
    found = []
    root = Path(aido.__file__).parent
    for info in pkgutil.walk_packages([str(root)], "aido."):
        path = root.joinpath(*info.name.split(".")[1:])
        source = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
        if "from aido.values import" not in source.read_text():
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == info.name
                and getattr(value.__init__, "__module__", None) == "aido.values"
            ):
                found.append(value)
    return found


def _twin(cls: type) -> type:
    """The same class, made by dataclasses.dataclass."""
    frozen = getattr(cls.__dict__.get("__setattr__"), "__module__", None) == "aido.values"
    fields = {f.name: f for f in dataclasses.fields(cls)}
    made = {"__dict__", "__weakref__", "__dataclass_fields__", "__dataclass_params__", "__match_args__"}
    namespace: dict[str, Any] = {
        name: value
        for name, value in cls.__dict__.items()
        if name not in made | fields.keys() | {"__doc__"}
        and getattr(value, "__module__", None) != "aido.values"  # what aido.values made
        and not (name == "__hash__" and value is None)
    }
    namespace["__annotations__"] = dict(inspect.get_annotations(cls))
    for name in namespace["__annotations__"]:
        f = fields.get(name)
        if f is not None:
            namespace[name] = dataclasses.field(
                default=f.default,
                default_factory=f.default_factory,
                init=f.init,
                repr=f.repr,
                compare=f.compare,
                hash=f.hash,
            )
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
        namespace["__doc__"] = cls.__doc__
    return dataclasses.dataclass(frozen=frozen)(type(cls.__name__, cls.__bases__, namespace))


def _outcome(call: Any, *args: Any) -> tuple[str, str]:
    try:
        return "ok", repr(call(*args))
    except Exception as exc:
        return type(exc).__name__, str(exc)


def _same(ours: type, twin: type) -> None:
    names = [f.name for f in dataclasses.fields(ours) if f.init]
    required = [
        f.name
        for f in dataclasses.fields(ours)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    assert [(f.name, f.init, f.repr, f.compare, f.hash) for f in dataclasses.fields(ours)] == [
        (f.name, f.init, f.repr, f.compare, f.hash) for f in dataclasses.fields(twin)
    ]
    assert ours.__match_args__ == twin.__match_args__  # type: ignore[attr-defined]
    assert ours.__doc__ == twin.__doc__
    assert (ours.__hash__ is None) == (twin.__hash__ is None)
    a = [f"a-{n}" for n in names]
    b = [f"b-{n}" for n in names]
    calls = [
        lambda c: c(*a),
        lambda c: c(*required),  # defaults and default factories
        lambda c: c(**dict(zip(names, b, strict=True))),
        lambda c: c(*a[:1], **dict(zip(names[1:], b[1:], strict=True))),
        lambda c: c(),
        lambda c: c(*required[:-1]),
        lambda c: c(*a, "extra"),
        lambda c: c(*a, nope=1),
        lambda c: c(*a[:1], **{names[0]: 1}) if names else c(x=1),
        lambda c: dataclasses.replace(c(*a), **dict(zip(names[:1], b[:1], strict=True))),
        lambda c: dataclasses.asdict(c(*a)),
        lambda c: c(*a) == c(*a),
        lambda c: c(*a) == c(*b),
        lambda c: c(*a) == object(),
        lambda c: hash(c(*a)) if c.__hash__ else None,
    ]
    for index, call in enumerate(calls):
        assert _outcome(call, ours) == _outcome(call, twin), (ours, index)
    instance, twin_instance = ours(*a), twin(*a)
    for target in ((names[0] if names else "x"), "not_a_field"):
        assert _outcome(setattr, instance, target, 1) == _outcome(setattr, twin_instance, target, 1)
        assert _outcome(delattr, instance, target) == _outcome(delattr, twin_instance, target)


VALUE_CLASSES = _value_classes()


def test_aido_value_classes_are_found() -> None:
    assert len(VALUE_CLASSES) > 30  # the test below holds them all


@pytest.mark.parametrize("cls", VALUE_CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_each_aido_value_class_behaves_as_its_standard_twin(cls: type) -> None:
    _same(cls, _twin(cls))


# Cases aido's classes do not all show: field options, no docstring, a held self, a class hash.


@dataclass(frozen=True)
class Options:
    kept: int
    factory: list[int] = field(default_factory=list)
    hidden: str = field(default="h", repr=False)
    ignored: float = field(default=0.5, compare=False)
    derived: dict[str, int] = field(default_factory=dict, init=False)
    LIMIT: ClassVar[int] = 3


@dataclass
class Mutable:
    items: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class OwnHash:
    """Has its own __hash__."""

    x: int

    def __hash__(self) -> int:
        return 7


@pytest.mark.parametrize("cls", [Options, Mutable, OwnHash])
def test_field_options_and_class_methods_behave_as_the_standard_ones(cls: type) -> None:
    _same(cls, _twin(cls))


def test_a_value_holding_itself_shows_dots_as_the_standard_one_does() -> None:
    ours = Mutable()
    ours.items.append(ours)
    twin = _twin(Mutable)()
    twin.items.append(twin)
    assert repr(ours) == repr(twin) == "Mutable(items=[...])"
    assert Mutable() == Mutable()
    assert hash(OwnHash(1)) == 7
    with pytest.raises(TypeError, match="unhashable"):
        hash(Mutable())


def test_what_it_cannot_do_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):

        @dataclass
        class Order:
            a: int = 1
            b: int  # type: ignore[misc]

    with pytest.raises(TypeError, match="cannot inherit"):

        @dataclass
        class Child(Options):
            more: int = 0
