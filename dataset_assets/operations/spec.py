"""Read operation lists in the request format and explain what is wrong with bad ones.

A list item is either an operation name (`"GrayScale"`) or a one-key object naming the operation
and holding its parameters (`{"Resize": {"scaling_factor": 0.5}}`). Every problem in the list is
reported at once, one line each, naming the item's index, the operation, the parameter, the bad
value and what is allowed.
"""

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from dataset_assets.operations.base import OPERATIONS, Operation, OperationError

_MAX_VALUE_CHARS = 60


def parse_operations(spec: Any, where: str = "operations") -> tuple[Operation, ...]:
    """Build the operations of a request's list; raises `OperationError` listing every problem.

    Items that already are `Operation` instances are taken as they are.
    """
    if isinstance(spec, str | bytes | Mapping) or not isinstance(spec, Sequence):
        raise OperationError(
            f"{where}: expected a list of operations, got {_show(spec)} ({type(spec).__name__})"
        )
    operations: list[Operation] = []
    problems: list[str] = []
    for index, item in enumerate(spec):
        try:
            operations.append(_parse_item(item, f"{where}[{index}]"))
        except OperationError as error:
            problems.extend(str(error).splitlines())
    if problems:
        raise OperationError("\n".join(problems))
    return tuple(operations)


def _parse_item(item: Any, where: str) -> Operation:
    if isinstance(item, Operation):
        return item
    if isinstance(item, str):
        name, params = item, {}
    elif isinstance(item, Mapping) and len(item) == 1:
        ((name, params),) = item.items()
        if not isinstance(name, str):
            raise OperationError(f"{where}: operation name must be a string, got {_show(name)}")
        if not isinstance(params, Mapping):
            raise OperationError(
                f"{where} {name}: parameters must be an object, got {_show(params)}"
            )
    else:
        raise OperationError(
            f"{where}: expected an operation name or a one-key object "
            f'{{"Name": {{parameters}}}}, got {_show(item)} ({type(item).__name__})'
        )
    operation_class = OPERATIONS.get(name)
    if operation_class is None:
        raise OperationError(f"{where}: unknown operation {name!r}{_suggest(name)}")
    try:
        return operation_class.model_validate(params)
    except ValidationError as error:
        raise OperationError(
            "\n".join(_describe(error, f"{where} {name}", operation_class))
        ) from None


def _suggest(name: str) -> str:
    known = sorted(OPERATIONS)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; known operations: {', '.join(known)}"


def _describe(error: ValidationError, where: str, operation_class: type[Operation]) -> list[str]:
    lines: list[str] = []
    for problem in error.errors(include_url=False):
        loc = problem["loc"]
        cause = problem.get("ctx", {}).get("error")
        if isinstance(cause, OperationError):
            lines.extend(f"{where}: {line}" for line in str(cause).splitlines())
            continue
        message = str(cause) if problem["type"] == "value_error" else problem["msg"]
        if not loc:
            lines.append(f"{where}: {message}")
            continue
        param = str(loc[0]) + "".join(f"[{part}]" for part in loc[1:] if isinstance(part, int))
        if problem["type"] == "extra_forbidden":
            allowed = ", ".join(operation_class.model_fields) or "none"
            lines.append(f"{where}: unknown parameter {param!r} (allowed: {allowed})")
        elif problem["type"] == "missing":
            lines.append(f"{where}: missing required parameter {param!r}")
        else:
            lines.append(f"{where}: {param}={_show(problem['input'])}: {message}")
    return lines


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."
