"""Reference documentation generated from the code: the operations and the request's fields.

`dataset-assets operations` prints `operations_text()`; `docs/configuration.md` is
`configuration_markdown()` (regenerate it with `python -m dataset_assets.reference`), and a test
fails when the checked-in file differs, so the reference cannot fall behind the code.
"""

import json
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from dataset_assets.operations import OPERATIONS, describe_operations
from dataset_assets.request import (
    DatasetRequest,
    DedupConfig,
    IngestConfig,
    LabelConfig,
    ReportConfig,
    TieringConfig,
    TransformConfig,
    ValidationConfig,
)

SECTIONS: dict[str, tuple[type[BaseModel], frozenset[str]]] = {
    "ingest": (IngestConfig, frozenset({"dataset_key"})),
    "validation": (ValidationConfig, frozenset({"mode"})),
    "dedup": (DedupConfig, frozenset()),
    "transform": (TransformConfig, frozenset({"operations", "seed", "output_format", "quality"})),
    "labels": (LabelConfig, frozenset()),
    "tiering": (TieringConfig, frozenset()),
    "report": (ReportConfig, frozenset()),
}
"""Each request section, its stage `Config`, and the fields the request sets at the top level."""

TOP_LEVEL: dict[str, tuple[type[BaseModel], str]] = {
    "dataset_key": (IngestConfig, "dataset_key"),
    "operations": (TransformConfig, "operations"),
    "validation_mode": (ValidationConfig, "mode"),
    "seed": (TransformConfig, "seed"),
    "output_format": (TransformConfig, "output_format"),
    "output_quality": (TransformConfig, "quality"),
}
"""Top-level request fields that are a stage setting under another name."""


@dataclass(frozen=True)
class Parameter:
    """One documented field: what a user may write and what it does."""

    name: str
    type: str
    default: str
    range: str
    meaning: str


def type_name(annotation: Any) -> str:
    """A short, readable name of a field's type: `int`, `float or null`, `"a" | "b"`."""
    origin = get_origin(annotation)
    if origin is Literal:
        return " | ".join(json.dumps(value) for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        names = [type_name(arg) for arg in get_args(annotation)]
        return " or ".join("null" if name == "NoneType" else name for name in names)
    if origin in (list, tuple):
        args = [type_name(arg) for arg in get_args(annotation) if arg is not Ellipsis]
        return f"list of {args[0]}" if args else "list"
    if origin is dict:
        return "object"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def value_range(field: FieldInfo) -> str:
    """The bounds pydantic checks, e.g. `> 0, <= 8`; empty when there are none."""
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    bounds = []
    for item in field.metadata:
        for attribute, symbol in symbols.items():
            if isinstance(item, annotated_types.BaseMetadata) and hasattr(item, attribute):
                bounds.append(f"{symbol} {getattr(item, attribute)}")
    return ", ".join(bounds)


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return json.dumps(field.default_factory())
    if field.default is PydanticUndefined:
        return "required"
    return json.dumps(field.default, default=str)


def parameter(name: str, field: FieldInfo, meaning: str | None = None) -> Parameter:
    return Parameter(
        name=name,
        type=type_name(field.annotation),
        default=default_text(field),
        range=value_range(field),
        meaning=" ".join((meaning if meaning is not None else field.description or "").split()),
    )


def model_parameters(model: type[BaseModel], skip: frozenset[str] = frozenset()) -> list[Parameter]:
    return [
        parameter(name, field) for name, field in model.model_fields.items() if name not in skip
    ]


def request_parameters() -> Iterator[tuple[str, list[Parameter]]]:
    """(section title, its fields) for every field a request may hold, in request order."""
    top = []
    for name, field in DatasetRequest.model_fields.items():
        if name in TOP_LEVEL:
            model, setting = TOP_LEVEL[name]
            top.append(parameter(name, model.model_fields[setting]))
        elif name not in SECTIONS:
            top.append(parameter(name, field))
    yield "top level", top
    for section, (model, skip) in SECTIONS.items():
        yield section, model_parameters(model, skip)


def operations_text() -> str:
    """Every operation with its one-line description and its parameters, for the terminal."""
    lines = []
    for name, doc in describe_operations():
        lines.append(f"{name:<12} {doc}")
        for item in model_parameters(OPERATIONS[name]):
            default = "required" if item.default == "required" else f"default {item.default}"
            details = ", ".join(part for part in (default, item.range) if part)
            lines.append(f"    {item.name:<16} {item.type} ({details})")
    return "\n".join(lines)


def _table(rows: list[Parameter], first: str) -> list[str]:
    lines = [f"| {first} | type | default | range | meaning |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        cells = (f"`{row.name}`", row.type, f"`{row.default}`", row.range, row.meaning)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines


def configuration_markdown() -> str:
    """`docs/configuration.md`: every request field and every operation parameter."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the request model by `python -m dataset_assets.reference`; do not edit.",
        "A request is a JSON object with the top-level fields below; each section (`validation`,",
        '`dedup`, ...) is an object of its own, e.g. `"dedup": {"threshold": 4}`. Unknown fields',
        "are refused. The same fields appear in the Dagster launchpad as each stage's config.",
        "",
    ]
    for section, rows in request_parameters():
        title = "Top level" if section == "top level" else f"`{section}`"
        lines += [f"## {title}", "", *_table(rows, "field"), ""]
    lines += [
        "## Operations",
        "",
        'Each entry of `operations` is a name (`"GrayScale"`) or a one-key object with its',
        'parameters (`{"Resize": {"max_side": 512}}`).',
        "",
    ]
    for name, doc in describe_operations():
        rows = model_parameters(OPERATIONS[name])
        lines += [f"### `{name}`", "", doc, ""]
        lines += [*_table(rows, "parameter"), ""] if rows else []
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(configuration_markdown(), end="")
