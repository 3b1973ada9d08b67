"""`$ref` and depth checks on JSON schemas before either grammar backend compiles them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sglang.runtime.grammar.base import GrammarError, parse_json_schema
from sglang.runtime.grammar.schema_check import MAX_SCHEMA_DEPTH, check_schema, resolve_ref

SCHEMA: dict[str, Any] = {
    "type": "object",
    "$defs": {"name": {"type": "string"}, "a/b": {"type": "integer"}, "p%q": {"type": "null"},
              "list": [{"type": "boolean"}]},
    "properties": {
        "n": {"$ref": "#/$defs/name"},
        "slash": {"$ref": "#/$defs/a~1b"},
        "pct": {"$ref": "#/$defs/p%25q"},
        "idx": {"$ref": "#/$defs/list/0"},
        "self": {"$ref": "#"},
        # A property called $ref, and a $ref-shaped value in data keywords, are not refs.
        "$ref": {"type": "string", "const": {"$ref": "#/nowhere"}},
        "e": {"enum": [{"$ref": "#/nowhere"}]},
    },
}


def test_local_refs_resolve() -> None:
    check_schema(SCHEMA)
    assert resolve_ref(SCHEMA, "#/$defs/a~1b") == {"type": "integer"}
    assert resolve_ref(SCHEMA, "#/$defs/p%25q") == {"type": "null"}
    assert resolve_ref(SCHEMA, "#/$defs/list/0") == {"type": "boolean"}
    assert resolve_ref(SCHEMA, "#") is SCHEMA


@pytest.mark.parametrize(("ref", "message"), [
    ("#/$defs/missing", "does not resolve"),
    ("#/$defs/list/1", "does not resolve"),
    ("#/$defs/name/type/x", "does not resolve"),
    ("other.json#/a", "only local refs"),
    ("https://example.com/s.json", "only local refs"),
    ("#anchor", "only local refs"),
])
def test_bad_refs_are_refused(ref: str, message: str) -> None:
    schema = {"type": "array", "items": {"anyOf": [{"type": "string"}, {"$ref": ref}]}}
    with pytest.raises(ValueError, match=message):
        check_schema(schema)
    with pytest.raises(GrammarError, match=message):
        parse_json_schema(json.dumps(schema))


def test_depth_is_bounded_without_recursion() -> None:
    def nested(depth: int) -> Any:
        node: Any = {}
        for _ in range(depth - 1):
            node = {"items": node}
        return node

    check_schema(nested(MAX_SCHEMA_DEPTH))  # a level is one object or array, as in JSON
    with pytest.raises(ValueError, match="nests more than"):
        check_schema(nested(MAX_SCHEMA_DEPTH + 1))
    deep = '{"items": ' * 100_000 + "{}" + "}" * 100_000  # past json.loads' own recursion
    with pytest.raises(GrammarError, match="nested too deeply"):
        parse_json_schema(deep)
