"""Builds our input classes from GraphQL input values with a plan made once per class.

Strawberry's generic conversion (``convert_argument``) re-reads every field's annotation, name
and container types on every request, a large share of placeOrder's CPU time
(docs/performance.md). Our inputs are plain: scalars graphql-core has already parsed
(``Decimal`` included), nested inputs, lists of them, optional fields that default to ``None``.
For such a class the conversion is a fixed plan, computed here from strawberry's own definition
and installed through its ``from_input`` hook (``StrawberryObjectDefinition.from_input``, the
extension point integrations such as strawberry.pydantic use)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from strawberry.types.arguments import InputContext
from strawberry.types.base import (
    StrawberryList,
    StrawberryObjectDefinition,
    StrawberryOptional,
    StrawberryType,
    has_object_definition,
)
from strawberry.types.enum import has_enum_definition
from strawberry.types.lazy_type import LazyType
from strawberry.utils.str_converters import to_camel_case

Convert = Callable[[Any], Any]


def install(*classes: type) -> None:
    for cls in classes:
        _definition(cls).from_input = _from_input(cls)


def _definition(cls: type) -> StrawberryObjectDefinition:
    definition = getattr(cls, "__strawberry_definition__", None)
    if not isinstance(definition, StrawberryObjectDefinition) or not definition.is_input:
        raise TypeError(f"{cls!r} is not a strawberry input")
    return definition


def _from_input(cls: type) -> Callable[[type, Mapping[str, Any], InputContext], Any]:
    # Per class built and naming convention; the usual one is planned now, so that a type
    # without a plan fails at import, not on a request.
    builders: dict[tuple[type, bool], Convert] = {(cls, True): _builder(cls, camel=True)}

    def from_input(target: type, value: Mapping[str, Any], context: InputContext) -> Any:
        camel = context.config.name_converter.auto_camel_case
        build = builders.get((target, camel))
        if build is None:
            build = builders[(target, camel)] = _builder(target, camel)
        return build(value)

    return from_input


def _builder(cls: type, camel: bool) -> Convert:
    definition = _definition(cls)
    plan: list[tuple[str, str, Convert | None]] = []
    unset: dict[str, None] = {}  # fields without a default, when the client left them out
    for field in definition.fields:
        # Published defaults are filled in by graphql-core; fields without one are None
        # when absent, as in strawberry's own conversion.
        if (
            field.default_value is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING
        ):
            unset[field.python_name] = None
        python_name = field.python_name
        name = field.graphql_name or (to_camel_case(python_name) if camel else python_name)
        plan.append((name, python_name, _converter(field.resolve_type(), camel)))

    def build(value: Mapping[str, Any]) -> Any:
        kwargs: dict[str, Any] = dict(unset)
        for name, python_name, convert in plan:
            if name in value:
                item = value[name]
                kwargs[python_name] = item if convert is None or item is None else convert(item)
        return cls(**kwargs)

    return build


def _converter(type_: StrawberryType | type | Any, camel: bool) -> Convert | None:
    """None where the value is used as it is (a scalar graphql-core has parsed)."""
    if isinstance(type_, StrawberryOptional):
        return _converter(type_.of_type, camel)
    if isinstance(type_, StrawberryList):
        item = _converter(type_.of_type, camel)
        if item is None:
            return list  # a copy: graphql-core shares default values between requests
        return lambda values: [None if v is None else item(v) for v in values]
    if isinstance(type_, LazyType) or has_enum_definition(type_):
        raise TypeError(f"no plan for {type_!r}: let strawberry convert it")
    if has_object_definition(type_):
        return _builder(type_, camel)
    if isinstance(type_, StrawberryType):
        raise TypeError(f"no plan for {type_!r}: let strawberry convert it")
    return None
