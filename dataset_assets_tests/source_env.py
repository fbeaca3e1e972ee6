"""Which environment variables the package reads, found in its source rather than listed twice."""

import ast
from pathlib import Path

ENV_READERS = {"get", "getenv", "EnvVar", "from_env", "optional_env"}
"""Calls whose first argument names an environment variable the package reads."""


def names_read_by_package(package: Path) -> set[str]:
    """`DATASET_ASSETS_*` names the package reads, from its source: `os.environ.get(NAME)`,
    `os.getenv`, `os.environ[NAME]`, `EnvVar(NAME)` and the `from_env` / `optional_env` helpers,
    with NAME a string literal or a module-level string constant."""
    names = set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            argument = None
            if isinstance(node, ast.Call) and node.args:
                function = node.func
                called = function.attr if isinstance(function, ast.Attribute) else None
                called = function.id if isinstance(function, ast.Name) else called
                if called in ENV_READERS:
                    argument = node.args[0]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
                argument = node.slice
            if isinstance(argument, ast.Constant):
                names.add(argument.value)
            elif isinstance(argument, ast.Name) and argument.id in constants:
                names.add(constants[argument.id])
    return {name for name in names if isinstance(name, str) and name.startswith("DATASET_ASSETS_")}
