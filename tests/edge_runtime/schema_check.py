"""A small JSON Schema checker for the subset our schema files use (no jsonschema dependency)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parents[2] / "edge_runtime" / "schemas"
_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "boolean": bool, "null": type(None)}


def load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


def errors(doc: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    out: list[str] = []
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        ok = any(isinstance(doc, _TYPES[x]) and not (isinstance(doc, bool) and x in ("integer", "number")) for x in types)
        if not ok:
            return [f"{path}: {doc!r} is not {t}"]
    if "const" in schema and doc != schema["const"]:
        out.append(f"{path}: {doc!r} != {schema['const']!r}")
    if "enum" in schema and doc not in schema["enum"]:
        out.append(f"{path}: {doc!r} not in {schema['enum']}")
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        if "minimum" in schema and doc < schema["minimum"]:
            out.append(f"{path}: {doc} < {schema['minimum']}")
        if "maximum" in schema and doc > schema["maximum"]:
            out.append(f"{path}: {doc} > {schema['maximum']}")
        if "exclusiveMinimum" in schema and doc <= schema["exclusiveMinimum"]:
            out.append(f"{path}: {doc} <= {schema['exclusiveMinimum']}")
    if isinstance(doc, str) and not schema.get("minLength", 0) <= len(doc) <= schema.get("maxLength", 1 << 30):
        out.append(f"{path}: length {len(doc)} out of range")
    if isinstance(doc, dict):
        for k in schema.get("required", []):
            if k not in doc:
                out.append(f"{path}: missing {k}")
        for k, sub in schema.get("properties", {}).items():
            if k in doc:
                out += errors(doc[k], sub, f"{path}.{k}")
        if schema.get("additionalProperties") is False:
            out += [f"{path}: unexpected {k}" for k in doc if k not in schema.get("properties", {})]
    if isinstance(doc, list) and "items" in schema:
        for i, x in enumerate(doc):
            out += errors(x, schema["items"], f"{path}[{i}]")
    return out
