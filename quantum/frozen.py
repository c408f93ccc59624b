"""A faster `__init__` for frozen, slotted dataclasses on hot paths.

A frozen dataclass sets each field through `object.__setattr__` (it must go around its own
`__setattr__`, which raises). That costs ~0.2 µs a field: building the governor's 18-field
`Decision` took ~4.5 µs, a third of deciding a command (docs/governor-performance.md).
`fast_init` replaces the generated `__init__` by one that writes each slot through its
member descriptor (`Cls.field.__set__`), which is what `object.__setattr__` ends up doing,
without the attribute lookups: the class stays frozen (assignment still raises), and
equality, hashing, repr, `dataclasses.replace` and pickling are the dataclass's own.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def fast_init(cls: type[T]) -> type[T]:
    """Class decorator, applied after `@dataclass(frozen=True, slots=True)`."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"fast_init needs a frozen, slotted dataclass, not {cls!r}")
    fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    if len(fields) != len(dataclasses.fields(cls)):  # type: ignore[arg-type]
        raise TypeError(f"{cls.__name__}: fast_init does not handle init=False fields")
    env: dict[str, Any] = {}
    args: list[str] = []
    body: list[str] = []
    for i, f in enumerate(fields):
        if f.default_factory is not dataclasses.MISSING or f.kw_only is True:
            raise TypeError(f"{cls.__name__}.{f.name}: fast_init handles plain fields only")
        if f.default is dataclasses.MISSING:
            args.append(f.name)
        else:
            env[f"_d{i}"] = f.default
            args.append(f"{f.name}=_d{i}")
        env[f"_s{i}"] = getattr(cls, f.name).__set__
        body.append(f"    _s{i}(self, {f.name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(args)}):\n" + "\n".join(body or ["    pass"])
    exec(source, env)
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    cls.__init__ = init  # type: ignore[misc]
    return cls
