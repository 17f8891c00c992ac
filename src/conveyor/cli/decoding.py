"""JSON back into the service's dataclasses: the inverse of `output.to_jsonable`.

A server answers with what `conveyor <cmd> -o json` prints; decoding it into the same
dataclasses lets each command print a server's answer with the very printer it uses for
the local project, so both read alike.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from enum import Enum
from functools import cache
from typing import Any, TypeVar, cast

from conveyor.errors import ConveyorError

T = TypeVar("T")


class DecodeError(ConveyorError):
    """The server's answer does not have the shape this CLI expects."""


def decode(kind: type[T], value: Any) -> T:
    """`value` (parsed JSON) as a `kind`: a dataclass, an enum, a pydantic model, a list,
    tuple or mapping of them, or a plain type."""
    return cast(T, _decode(kind, value, "answer"))


def _decode(kind: Any, value: Any, where: str) -> Any:  # noqa: PLR0911, PLR0912 (a branch per kind)
    origin = typing.get_origin(kind)
    if kind is Any or kind is object:
        return value
    if origin in (typing.Union, types.UnionType):
        return _decode_union(typing.get_args(kind), value, where)
    if value is None:
        raise DecodeError(f"the server's {where} is missing")
    if origin in (list, Sequence) or kind is list:
        return [_decode(_arg(kind, 0), item, where) for item in _items(value, where)]
    if origin is tuple:
        return _decode_tuple(typing.get_args(kind), value, where)
    if origin in (dict, Mapping) or kind is dict:
        args = typing.get_args(kind) or (str, Any)
        if not isinstance(value, dict):
            raise DecodeError(f"the server's {where} is not an object")
        return {_decode(args[0], k, where): _decode(args[1], v, where) for k, v in value.items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _decode_dataclass(kind, value, where)
    if isinstance(kind, type) and issubclass(kind, Enum):
        try:
            return kind(value)
        except ValueError:
            raise DecodeError(f"the server's {where} has an unknown value {value!r}") from None
    if isinstance(kind, type) and hasattr(kind, "model_validate"):
        return kind.model_validate(value)
    if kind is float and isinstance(value, int | float):
        return float(value)
    if isinstance(kind, type) and not isinstance(value, kind):
        raise DecodeError(f"the server's {where} is not a {kind.__name__}: {value!r}")
    return value


def _decode_union(options: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in options:
        return None
    last: DecodeError | None = None
    for option in options:
        if option is type(None):
            continue
        try:
            return _decode(option, value, where)
        except (DecodeError, ValueError, TypeError) as error:
            last = DecodeError(str(error))
    raise last or DecodeError(f"the server's {where} is missing")


def _decode_tuple(args: tuple[Any, ...], value: Any, where: str) -> tuple[Any, ...]:
    items = _items(value, where)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_decode(args[0], item, where) for item in items)
    return tuple(_decode(arg, item, where) for arg, item in zip(args, items, strict=False))


def _decode_dataclass(kind: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise DecodeError(f"the server's {where} is not an object")
    hints = _hints(kind)
    values = {}
    for field in dataclasses.fields(kind):
        if not field.init:
            continue
        if field.name not in value:
            if _has_default(field):
                continue
            raise DecodeError(f"the server's {where} has no {field.name!r}")
        values[field.name] = _decode(hints[field.name], value[field.name], field.name)
    return kind(**values)


@cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _has_default(field: dataclasses.Field[Any]) -> bool:
    return (
        field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
    )


def _arg(kind: Any, index: int) -> Any:
    args = typing.get_args(kind)
    return args[index] if len(args) > index else Any


def _items(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise DecodeError(f"the server's {where} is not a list")
    return value
