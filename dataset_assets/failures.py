"""Why a run failed, in one line: what the CLI prints and the status topic and tracking carry."""

from collections.abc import Iterable

from dagster import AssetCheckSeverity, DagsterEvent, DagsterEventType, DagsterInstance


def failure_cause(
    events: Iterable[DagsterEvent], run_end: DagsterEvent | None = None
) -> tuple[str | None, str]:
    """The stage that stopped the run and why.

    A failed blocking check of ERROR severity comes first, with its description (Dagster's own
    error names only the check; a WARN check does not stop a run); then the first failed step,
    with a `Failure`'s description or else the innermost exception; then the run's own message
    (a failure before any step, or a cancellation).
    """
    events = list(events)
    for event in events:
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            stops = evaluation.blocking and evaluation.severity == AssetCheckSeverity.ERROR
            if not evaluation.passed and stops and evaluation.description:
                stage = evaluation.asset_key.path[-1]
                return stage, f"check {evaluation.check_name} failed: {evaluation.description}"
    for event in events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        stage = (event.step_key or "").split(".")[0] or None
        if data.user_failure_data and data.user_failure_data.description:
            return stage, data.user_failure_data.description
        error = data.error
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            lines = error.message.strip().splitlines() or [""]
            return stage, f"{error.cls_name}: {lines[-1]}"
    return None, (run_end.message if run_end else None) or "run failed"


def run_failure_cause(
    instance: DagsterInstance, run_id: str, run_end: DagsterEvent | None = None
) -> tuple[str | None, str]:
    """`failure_cause` of a run from its event log, wherever it ran (the daemon, a pod)."""
    events = [
        entry.dagster_event
        for entry in instance.all_logs(
            run_id,
            of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.ASSET_CHECK_EVALUATION},
        )
        if entry.dagster_event is not None
    ]
    return failure_cause(events, run_end)
