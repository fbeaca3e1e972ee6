"""Quality gates: when a ratio check blocks the run and when it only warns.

A gate blocks in `strict` mode, when the request sets its threshold (the user asked for that
limit), or when no image is left to go on with. Otherwise (`lenient`, `report-only`, threshold
left at its default) it warns: a collection that is mostly copies is exactly when the user needs
the report and its clusters, so the run goes on and the report shows the warning. Messages name
the request field by its full path.
"""

from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity

DEFAULT_MAX_RATIO = 0.5


def gate(
    name: str,
    field: str,
    value: float,
    threshold: float | None,
    mode: str,
    *,
    nothing_left: bool = False,
) -> dict[str, Any]:
    """What a gate saw and decided, as stage summaries and the report keep it."""
    limit = DEFAULT_MAX_RATIO if threshold is None else threshold
    if mode == "strict":
        why = "strict mode"
    elif threshold is not None:
        why = "set in the request"
    elif nothing_left:
        why = "no image left"
    else:
        why = ""
    blocking = bool(why)
    passed = value <= limit
    return {
        "gate": name,
        "field": field,
        "value": value,
        "threshold": limit,
        "explicit": threshold is not None,
        "blocking": blocking,
        "blocks_because": why or None,
        "passed": passed,
        "outcome": "passed" if passed else "stopped the run" if blocking else "warning",
    }


def gate_result(decision: dict[str, Any], detail: str) -> AssetCheckResult:
    """The check's result: ERROR (blocks downstream) for a blocking gate, else WARN."""
    how = (
        f"blocks: {decision['blocks_because']}"
        if decision["blocking"]
        else "warns only: lenient mode and a default threshold"
    )
    default = "" if decision["explicit"] else " (default)"
    return AssetCheckResult(
        passed=decision["passed"],
        severity=AssetCheckSeverity.ERROR if decision["blocking"] else AssetCheckSeverity.WARN,
        description=f"{detail} ({decision['gate'].replace('_', ' ')} {decision['value']:.2f}, "
        f"{decision['field']} {decision['threshold']:.2f}{default}; {how})",
        metadata={
            key: decision[key] for key in ("value", "threshold", "explicit", "blocking", "field")
        },
    )
