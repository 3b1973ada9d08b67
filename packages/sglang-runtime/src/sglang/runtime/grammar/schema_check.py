"""Checks on a JSON schema before a backend compiles it, so both backends refuse the same specs.

xgrammar refuses a JSON-pointer ref that does not resolve, but a ref that is not a pointer
(`https://...`, `other.json`, `#anchor`) only logs a warning and compiles to "any JSON value", so
structured output silently became unconstrained. Every ref must be local (`#` or a pointer
`#/...`) and resolve, checked here for both backends; remote refs are refused (the scheduler
fetches nothing). Nesting is bounded too: the backends recurse over the schema.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

# Far deeper than any real schema, far below where recursive compilers overflow.
MAX_SCHEMA_DEPTH = 128
# Keywords whose values are data, not subschemas: a {"$ref": ...} inside them is a value.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples", "example"})


def check_schema(schema: Any) -> None:
    """ValueError naming the first unresolvable or remote `$ref`, or a too-deep nesting."""
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise ValueError(f"the schema nests more than {MAX_SCHEMA_DEPTH} levels deep")
        if isinstance(node, list):
            stack.extend((x, depth + 1) for x in node)
            continue
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str):
            resolve_ref(schema, ref)
        stack.extend((v, depth + 1) for k, v in node.items() if k not in _DATA_KEYWORDS)


def resolve_ref(root: Any, ref: str) -> Any:
    """The node a local `$ref` points to (RFC 6901 pointer, percent-encoded in the fragment)."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        raise ValueError(f"$ref {ref!r} is not supported: only local refs ('#/...') are")
    node = root
    for raw in ref[2:].split("/"):
        token = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise ValueError(f"$ref {ref!r} does not resolve: no {token!r} in the schema")
    return node
