"""JSON drawn for a schema is valid against it (checked with `jsonschema`), for hand-written and pydantic schemas."""

from __future__ import annotations

import random
from enum import StrEnum
from typing import Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from server.sim.schema import MARKER, MAX_DEPTH, SchemaError, instance


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    city: str = Field(min_length=2, max_length=5)
    postcode: str | None = None


class Person(BaseModel):
    name: str
    age: int = Field(ge=18, lt=21)
    height_m: float = Field(gt=1.5, le=1.6)
    favourite: Colour
    tier: Literal["free", "pro"]
    addresses: list[Address] = Field(min_length=1, max_length=3)
    tags: dict[str, int]
    nickname: str | None


class Tree(BaseModel):
    label: str
    children: list[Tree]


class Expr(BaseModel):
    op: Literal["+", "*"] | None = None
    value: int | None = None
    left: Expr | None = None
    right: Expr | None = None


HAND_WRITTEN: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["location"],
    },
    {"type": "array", "items": {"type": "integer", "multipleOf": 7, "minimum": 10, "maximum": 30}, "minItems": 3},
    {"type": "number", "multipleOf": 0.1, "minimum": 0.2, "maximum": 0.5},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.001},
    {"type": "integer", "minimum": 5, "exclusiveMaximum": 6},
    {"type": ["string", "null"], "format": "date-time"},
    {"type": "string", "format": "uuid"},
    {"type": "string", "format": "email"},
    {"type": "string", "minLength": 40},
    {"type": "string", "maxLength": 3},
    {"type": "string", "pattern": "^[a-z]+$"},
    {"const": {"fixed": [1, 2]}},
    {
        "allOf": [
            {"properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"properties": {"b": {"type": "boolean"}}},
        ]
    },
    {"oneOf": [{"type": "null"}, {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}]},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
    {"type": "array", "items": {"enum": [1, 2, 3]}, "minItems": 3, "uniqueItems": True},
    {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "boolean"}}, "minProperties": 2},
    {"type": "object", "properties": {}, "additionalProperties": False},
    {"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"},
    {"definitions": {"leaf": {"type": "string"}}, "type": "array", "items": {"$ref": "#/definitions/leaf"}},
    {},
    True,
]


@pytest.mark.parametrize("schema", HAND_WRITTEN, ids=range(len(HAND_WRITTEN)))
def test_hand_written_schemas(schema: Any) -> None:
    for seed in range(20):
        value = instance(schema, random.Random(seed))
        jsonschema.validate(value, schema if schema is not True else {})


@pytest.mark.parametrize("model", [Person, Address, Tree, Expr])
def test_pydantic_schemas(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    for seed in range(20):
        value = instance(schema, random.Random(seed))
        jsonschema.validate(value, schema)
        model.model_validate(value)


def test_recursion_is_bounded_and_free_text_says_simulated() -> None:
    value = instance(Tree.model_json_schema(), random.Random(0))
    depth, node = 0, value
    while node["children"]:
        node, depth = node["children"][0], depth + 1
    assert depth <= 3  # past the shallow depth, arrays get only their minItems (0)
    assert value["label"].startswith(MARKER)


def test_deterministic_per_seed() -> None:
    schema = Person.model_json_schema()
    assert instance(schema, random.Random(3)) == instance(schema, random.Random(3))


@pytest.mark.parametrize(
    "schema",
    [
        False,
        {"type": "integer", "minimum": 3, "maximum": 2},
        {"type": "integer", "multipleOf": 10, "minimum": 1, "maximum": 9},
        {"$ref": "#/$defs/missing"},
        {"$ref": "https://example.com/schema.json"},
        {
            "$defs": {"loop": {"type": "object", "properties": {"x": {"$ref": "#/$defs/loop"}}, "required": ["x"]}},
            "$ref": "#/$defs/loop",
        },
        "not a schema",
    ],
)
def test_unsatisfiable_schemas_are_refused(schema: Any) -> None:
    with pytest.raises(SchemaError):
        instance(schema, random.Random(0))
    assert MAX_DEPTH >= 8


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 10**12},
        {"type": "array", "items": {"type": "array", "minItems": 9000}, "minItems": 9000},
        {"type": "number", "minimum": -1e308, "maximum": 1e308, "multipleOf": 1e-308},
        {"type": "integer", "minimum": 10**400},
        {"type": "object", "properties": ["not", "a", "mapping"]},
    ],
)
def test_huge_or_malformed_schemas_are_refused_quickly(schema: Any) -> None:
    with pytest.raises(SchemaError):
        instance(schema, random.Random(0))
