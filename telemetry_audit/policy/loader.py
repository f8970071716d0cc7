"""Read policy YAML keeping every value's position, and validate it against the shipped schema.

Positions let every error name the file, line and column and show the
snippet, the way semgrep's rule loader does.

The built-in packs are read with libyaml's parser when PyYAML has it, and are not validated again at run time:
they ship with the package and a test validates each one (and checks both parsers read it alike). Every
other file goes through the pure-Python parser and the schema, so its errors read the same as ever.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

from telemetry_audit.detectors import closest, detector_references, detector_schema
from telemetry_audit.policy.errors import PolicyError, snippet_at

if TYPE_CHECKING:
    import jsonschema

Position = tuple[int, int]
"""1-based (line, column)."""
PathKey = tuple[str | int, ...]
KEY = "<key>"
"""Path suffix under which a mapping key's own position is recorded."""


@dataclass
class LoadedDocument:
    """A parsed policy file: its data and where each value came from."""

    file: str
    source: str
    data: Any
    positions: dict[PathKey, Position]

    def position(self, path: PathKey) -> Position:
        """The position of `path`, or of its nearest ancestor that has one."""
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, (0, 0))

    def error(self, path: PathKey, message: str, hint: str = "") -> PolicyError:
        line, column = self.position(path)
        return PolicyError(self.file, message, line, column, snippet_at(self.source, line, column), hint)


class _Loader(yaml.SafeLoader):
    """SafeLoader: plain data only, no Python object tags."""


_FastLoader: type[Any] = getattr(yaml, "CSafeLoader", _Loader)
"""libyaml's SafeLoader (about 15 times faster), for the shipped packs only; the pure one where it is missing."""


def _build(doc_file: str, source: str, node: yaml.Node, positions: dict[PathKey, Position]) -> Any:
    """Construct plain data from a composed node tree, iteratively, recording positions."""
    loader = _Loader("")
    root_holder: list[Any] = [None]
    stack: list[tuple[yaml.Node, PathKey, Any, Any]] = [(node, (), root_holder, 0)]
    while stack:
        current, path, parent, key = stack.pop()
        positions[path] = (current.start_mark.line + 1, current.start_mark.column + 1)
        if isinstance(current, yaml.MappingNode):
            mapping: dict[str, Any] = {}
            parent[key] = mapping
            for key_node, value_node in current.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                    raise PolicyError(doc_file, "mapping keys must be plain strings", line, col,
                                      snippet_at(source, line, col))
                name = str(loader.construct_scalar(key_node))
                if name in mapping:
                    line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                    raise PolicyError(doc_file, f"duplicate key {name!r}", line, col, snippet_at(source, line, col),
                                      "each key may appear once per mapping")
                mapping[name] = None
                positions[path + (name, KEY)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                stack.append((value_node, path + (name,), mapping, name))
        elif isinstance(current, yaml.SequenceNode):
            items: list[Any] = [None] * len(current.value)
            parent[key] = items
            for index, item in enumerate(current.value):
                stack.append((item, path + (index,), items, index))
        else:
            try:
                parent[key] = loader.construct_object(current)
            except yaml.YAMLError as e:
                line, col = current.start_mark.line + 1, current.start_mark.column + 1
                raise PolicyError(doc_file, f"invalid value: {e}", line, col, snippet_at(source, line, col)) from None
    return root_holder[0]


def parse_yaml(file: str, source: str, *, shipped: bool = False) -> LoadedDocument:
    """Parse one YAML document with positions; raises `PolicyError` on any syntax problem.

    `shipped`: a built-in pack, parsed with libyaml when available (a file that libyaml refuses is parsed
    again the ordinary way, so an error reads the same).
    """
    if shipped and _FastLoader is not _Loader:
        try:
            fast = yaml.compose(source, Loader=_FastLoader)
        except yaml.YAMLError:
            fast = None
        if fast is not None:
            positions: dict[PathKey, Position] = {}
            return LoadedDocument(file, source, _build(file, source, fast, positions), positions)
    try:
        node = yaml.compose(source, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = e.problem or "invalid YAML"
        context = f" ({e.context})" if e.context else ""
        raise PolicyError(file, f"YAML syntax error: {problem}{context}", line, col, snippet_at(source, line, col),
                          "check indentation and quoting around this position") from None
    except yaml.YAMLError as e:
        raise PolicyError(file, f"YAML error: {e}") from None
    if node is None:
        raise PolicyError(file, "the policy file is empty", hint="a policy needs at least `rules: []`")
    positions = {}
    data = _build(file, source, node, positions)
    return LoadedDocument(file, source, data, positions)


@cache
def policy_schema() -> dict[str, Any]:
    """The JSON Schema every policy file is validated against (also for editors).

    The shipped file holds the policy language; every detector id and setting is filled in from the
    detector catalogue, so the schema can never accept a detector the engine does not have.
    """
    text = resources.files("telemetry_audit.policy").joinpath("policy.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    generated = detector_schema()
    defs = schema["$defs"]
    defs["detector_reference"] = {**generated["reference"], "description": "A detector family or detector id."}
    defs["detector_settings"] = generated["family_settings"]
    defs["forbid_entry"]["allOf"] = generated["settings_by_family"]
    defs["settings"]["properties"]["detectors"]["properties"] = {
        name: {"$ref": f"#/$defs/detector_settings/{name}"} for name in generated["family_settings"]
    }
    return schema


_LONG_ENUM = 12
"""Enums longer than this (detector ids) are not listed in a hint: `rules list --detectors` shows them."""
_PATTERN_HINTS = {
    "^[a-z0-9][a-z0-9_.-]*$": "ids are lower-case letters, digits, `.`, `_` and `-`, e.g. `sst.v4-batch`",
    "^[0-9a-f]{8,64}$": "fingerprints are the lower-case hex strings shown in reports",
}
_REQUIRED_HINTS = {
    "match": "a rule needs `match:` to say which requests it applies to, e.g. `match: {hosts: [api.example.com]}`",
    "id": "every rule needs a stable `id`",
    "rules": "a policy needs a `rules:` list (it may be empty: `rules: []`)",
    "keys": "a payload shape starts with the body's top-level keys (the cheap first test), "
            "e.g. `keys: [resourceSpans]`",
    "fields": "a payload shape names generic field paths the body must hold under its keys, e.g. "
              "`fields: [resourceSpans[].scopeSpans[].spans[].attributes.executionID]`",
    "equals": "`when` needs the values its field must have, e.g. `when: {field: events[].name, equals: [cli_cmd]}`",
}


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    """A message and hint in the user's words for a schema error."""
    where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in error.absolute_path).replace(".[", "[")
    prefix = f"{where}: " if where else ""
    validator = error.validator
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        names = ", ".join(repr(e) for e in extra)
        if not allowed:
            return f"{prefix}unknown key {names}", "this takes no keys"
        guess = closest(extra[0], allowed) if extra else None
        hint = f"did you mean {guess!r}? " if guess else ""
        return f"{prefix}unknown key {names}", f"{hint}expected one of: {', '.join(allowed)}"
    if validator == "enum":
        options = [o for o in error.validator_value if isinstance(o, str)]
        guess = closest(error.instance, options) if isinstance(error.instance, str) else None
        hint = f"did you mean {guess!r}? " if guess else ""
        if set(options) & set(detector_references()):
            what = "a detector family or detector id" if "secrets" in options else "a detector id of this family"
            return (f"{prefix}{error.instance!r} is not {what}",
                    f"{hint}see `telemetry-audit rules list --detectors` for every id")
        if len(options) > _LONG_ENUM:
            return f"{prefix}{error.instance!r} is not allowed", f"{hint}it is not one of {len(options)} known values"
        listed = ", ".join(repr(o) for o in error.validator_value)
        return f"{prefix}{error.instance!r} is not allowed", f"{hint}expected one of: {listed}"
    if validator == "dependentRequired":
        return (f"{prefix}an allowlist with `fields` or `values` must name its `detectors`",
                "an allowlist accepts only what it names: add e.g. `detectors: [secrets.authorization-header]`")
    if validator == "required":
        missing = [k for k in error.validator_value if isinstance(error.instance, dict) and k not in error.instance]
        name = missing[0] if missing else "?"
        return f"{prefix}missing required key {name!r}", _REQUIRED_HINTS.get(name, "")
    if validator == "type":
        return f"{prefix}expected {error.validator_value}, got {type(error.instance).__name__}", ""
    if validator == "pattern":
        hint = _PATTERN_HINTS.get(error.validator_value, f"expected text matching {error.validator_value}")
        return f"{prefix}{error.instance!r} is not valid here", hint
    if validator == "oneOf" and error.context:
        import jsonschema

        best = jsonschema.exceptions.best_match(error.context)
        if best is not None and best.validator != "required":
            return _describe(best)
        if isinstance(error.instance, dict) and "forbid" in [p for p in error.absolute_path if isinstance(p, str)]:
            if "pattern" in error.instance and "detector" not in error.instance:
                return (f"{prefix}a custom `pattern` needs `id` and `kind`",
                        "say what the pattern finds, e.g. `kind: pii` or `kind: field` (findings report it)")
            return f"{prefix}a forbid entry needs `detector`, or `pattern` with `id` and `kind`", ""
    return f"{prefix}{error.message}", ""


def validate(document: LoadedDocument) -> None:
    """Raise a `PolicyError` at the first schema violation (the deepest, most specific one)."""
    import jsonschema  # only files that are not shipped are validated at run time: most runs never need it

    validator = jsonschema.Draft202012Validator(policy_schema())
    errors = sorted(validator.iter_errors(document.data), key=lambda e: (-len(e.absolute_path), str(e.message)))
    if not errors:
        return
    error = jsonschema.exceptions.best_match(errors) or errors[0]
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - allowed)
        if extra:
            path = path + (extra[0], KEY)
    message, hint = _describe(error)
    raise document.error(path, message, hint)
