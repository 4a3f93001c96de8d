"""Every key of a stage's config with its type, default and help, for `findap-nemo <stage> --help-config`.

The help of a key is the comment written on its field in the schema (the line's trailing ``# ...`` and a comment
block directly above it), so the documentation lives in one place, next to the field, and cannot drift from it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any

def schema_of(path: str) -> type:
    """The class a "module:Class" path names (a stage's root schema, listed in ``findap_nemo.cli.STAGES``)."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """field name -> its comment in ``cls``'s source (own fields only; see :func:`describe` for inherited)."""
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}  # line -> comment text
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.add(tok.start[0])
    out = {}
    own = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    for i, text in enumerate(lines, 1):
        name = text.strip().split(":", 1)[0]
        if name not in own or not text.strip().startswith(f"{name}:"):
            continue
        above = []
        j = i - 1
        while j >= 1 and j in comments and j not in code_lines:
            above.insert(0, comments[j])
            j -= 1
        parts = above + ([comments[i]] if i in comments and i in code_lines else [])
        out.setdefault(name, " ".join(parts))
    return out


def _comment(cls: type, name: str) -> str:
    for klass in cls.__mro__:  # a subclass's field is documented where it is declared
        if dataclasses.is_dataclass(klass) and name in field_comments(klass):
            return field_comments(klass)[name]
    return ""


def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp.replace("typing.", "")
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"{_type_name(args[0])} | null" if len(args) == 1 else " | ".join(_type_name(a) for a in args)
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp))


def describe(schema: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(dotted key, type, default, help) for every leaf key of ``schema``, nested sections flattened."""
    hints = typing.get_type_hints(schema)
    rows = []
    for f in dataclasses.fields(schema):
        tp = hints.get(f.name, f.type)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, key + ".")
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = "(required)"
        rows.append((key, _type_name(tp), default, _comment(schema, f.name)))
    return rows


def help_config_text(stage: str, schema_path: str) -> str:
    import yaml

    schema = schema_of(schema_path)
    rows = describe(schema)
    out = [f"findap-nemo {stage}: every config key ({schema.__name__}); set any of them in the YAML or as a dotted "
           f"override (key=value)", ""]
    for key, tp, default, text in rows:
        shown = yaml.safe_dump(default, default_flow_style=True, width=1 << 16).strip().removesuffix("...").strip()
        out.append(f"{key}: {tp} = {shown}")
        if text:
            out += textwrap.wrap(text, width=116, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(out) + "\n"
