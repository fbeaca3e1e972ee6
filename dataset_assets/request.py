"""The dataset request: one model for the CLI, the Kafka sensor and Dagster run config.

A request names a source (`dataset_key`) and the operations to apply, plus optional settings
for each stage. Every stage reads its own section as a Pythonic `Config`, so the Dagster
launchpad shows the same fields a request file holds. Parsing fails before any work starts,
with a message naming the field, the value and what is allowed.
"""

import difflib
import hashlib
import itertools
import json
import re
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any, Literal

import pydantic
import re2
from dagster import Config, RunConfig

from dataset_assets.imaging.quality import ISSUE_THRESHOLDS
from dataset_assets.ingest.sources import unsafe_reason
from dataset_assets.ingest.urls import DownloadSettings
from dataset_assets.operations import OperationPipeline
from dataset_assets.partitions import check_request_id
from dataset_assets.stages.per_image import TransformPlan
from dataset_assets.stages.pools import PROCESS_MIN_IMAGES_PER_WORKER, PoolKind

ValidationMode = Literal["strict", "lenient", "report-only"]
OutputFormat = Literal["source", "jpeg", "png", "webp"]

MAX_REQUEST_BYTES = 1_000_000
MAX_JSON_DEPTH = 32
MAX_PATTERN_CHARS = 1_000
MAX_SEED = 2**63 - 1
MAX_OPERATIONS = 64
IMAGES_PER_SHARD = 1024
"""Default shard size of validation and the transform. Each step costs Dagster a few dozen
event-log writes (~35 ms on a quiet machine, several times that on a busy disk) however few
images it holds, and a shard's images already run on every core and resume one by one, so
smaller shards only add steps: 10,000 thumbnails in shards of 256 and 128 made 129 steps that
wrote 1,258 events, 19 s of the run on a busy machine."""
POLICY_ONLY = {"allow_private_hosts": "DATASET_ASSETS_ALLOW_PRIVATE_HOSTS"}
"""Settings that only the deployment may give, never a request, with the variable that does."""

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class RequestError(ValueError):
    """A request that cannot be run; the message says which field is wrong and why."""


def compile_label_pattern(pattern: str) -> "re2._Regexp":
    """A file-name pattern compiled by RE2, whose matching time is linear in the name's length
    (a nested quantifier cannot make it take seconds); RE2 refuses backreferences and
    lookarounds, which need backtracking."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"labels.pattern is {len(pattern)} characters, over {MAX_PATTERN_CHARS}")
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        cause = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else error
        raise ValueError(
            f"labels.pattern {pattern!r} is not a pattern RE2 accepts ({cause}); "
            "backreferences and lookarounds are not supported"
        ) from None


class IngestConfig(Config):
    """Where the images come from and which files count as candidates."""

    dataset_key: str = pydantic.Field(
        default="",
        description="Local folder, .zip, .tar or .tar.gz of images (class folders give labels), "
        "an S3 prefix or archive, or a list of image URLs (.txt, .csv, .tsv, .jsonl).",
    )
    max_file_bytes: int = pydantic.Field(
        default=100 * 1024 * 1024, gt=0, description="Larger files are rejected as file_too_large."
    )
    max_files: int = pydantic.Field(
        default=1_000_000, gt=0, description="A source with more files fails before any is read."
    )
    download_workers: int = pydantic.Field(
        default=16, ge=1, le=256, description="URL lists: downloads in flight at once."
    )
    download_timeout_s: float = pydantic.Field(
        default=10.0, gt=0, le=600, description="URL lists: seconds to connect and per read."
    )
    download_deadline_s: float = pydantic.Field(
        default=120.0, gt=0, le=3600, description="URL lists: longest one download may take."
    )
    download_retries: int = pydantic.Field(
        default=2, ge=0, le=10, description="URL lists: retries on timeouts, 429 and 5xx."
    )

    def downloads(self, allow_private_hosts: bool) -> DownloadSettings:
        """How URL lists are fetched; private-host access is the deployment's choice alone."""
        return DownloadSettings(
            workers=self.download_workers,
            timeout_s=self.download_timeout_s,
            deadline_s=self.download_deadline_s,
            retries=self.download_retries,
            max_bytes=self.max_file_bytes,
            allow_private_hosts=allow_private_hosts,
        )


def _workers(what: str = "per shard") -> Any:
    """`workers` of a stage that spreads its per-image (or per-pair) work."""
    return pydantic.Field(
        default=0,
        ge=0,
        le=64,
        description=f"Workers {what}; 0 = one per core. Processes never outnumber the cores.",
    )


def _pool(items: str = "a shard's images") -> Any:
    """`pool` of a stage that spreads its per-image (or per-pair) work."""
    return pydantic.Field(
        default="auto",
        description=f"Where {items} run: processes use every core; auto picks them from "
        f"{PROCESS_MIN_IMAGES_PER_WORKER} per worker, else threads.",
    )


def _max_ratio(what: str, check: str) -> Any:
    """The threshold field of a quality gate: unset means the default, which only warns."""
    return pydantic.Field(
        default=None,
        ge=0,
        le=1,
        description=f"Share of {what} above which the {check} gate trips (0.5 when unset). "
        "Blocks the run in strict mode or when set; otherwise warns.",
    )


class ValidationConfig(Config):
    """What a usable image is, and what happens to the others."""

    mode: ValidationMode = pydantic.Field(
        default="lenient",
        description="strict fails the run on any reject; lenient drops rejects; report-only keeps "
        "every decodable image and only reports.",
    )
    allowed_formats: list[str] = pydantic.Field(
        default=["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"],
        description="Decoded formats that are kept; others are rejected as unsupported_format.",
    )
    min_width: int = pydantic.Field(default=32, ge=1, description="Narrower is too_small.")
    min_height: int = pydantic.Field(default=32, ge=1, description="Lower is too_small.")
    max_width: int = pydantic.Field(default=20000, ge=1, description="Wider is too_large.")
    max_height: int = pydantic.Field(default=20000, ge=1, description="Taller is too_large.")
    max_pixels: int = pydantic.Field(
        default=50_000_000, ge=1, description="Decompression-bomb guard, read from the header."
    )
    min_aspect: float = pydantic.Field(
        default=0.1, gt=0, description="Width / height below this is bad_aspect_ratio."
    )
    max_aspect: float = pydantic.Field(
        default=10.0, gt=0, description="Width / height above this is bad_aspect_ratio."
    )
    multi_frame: Literal["first", "reject"] = pydantic.Field(
        default="first",
        description="Animated or multi-page files: keep the first frame, or reject.",
    )
    target_mode: Literal["RGB", "L", "keep"] = pydantic.Field(
        default="RGB", description="Colour mode every kept image is normalised to."
    )
    hash_kind: Literal["phash", "dhash", "whash"] = pydantic.Field(
        default="phash", description="Perceptual hash that near-duplicate search compares."
    )
    drop_issues: list[str] = pydantic.Field(
        default_factory=list,
        max_length=len(ISSUE_THRESHOLDS),
        description="Quality issues that reject an image (reason quality_issue), e.g. "
        '["blurry", "dark"]; each issue\'s threshold is in the README.',
    )
    max_invalid_ratio: float | None = _max_ratio("rejects", "invalid_ratio")
    images_per_shard: int = pydantic.Field(
        default=IMAGES_PER_SHARD,
        ge=4,
        le=100_000,
        description="Images per shard step; never one step per image.",
    )
    workers: int = _workers()
    pool: PoolKind = _pool()

    @pydantic.field_validator("drop_issues")
    @classmethod
    def _known_issues(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(ISSUE_THRESHOLDS))
        if unknown:
            known = ", ".join(ISSUE_THRESHOLDS)
            raise ValueError(f"unknown quality issue(s) {unknown}; known issues: {known}")
        return value


class DedupConfig(Config):
    """How duplicates are found and which copy of each cluster survives."""

    enabled: bool = pydantic.Field(default=True, description="false keeps every valid image.")
    near: bool = pydantic.Field(default=True, description="Also match near duplicates by hash.")
    threshold: int = pydantic.Field(
        default=6,
        ge=0,
        le=32,
        description="Perceptual-hash distance (bits) that counts as a near duplicate outright "
        "when verify is false.",
    )
    verify: bool = pydantic.Field(
        default=True,
        description="Count hash neighbours up to candidate_radius only once keypoint matching "
        "(or intensity alignment, for smooth pictures) confirms them: finds crops, rotations, "
        "flips and overlays that hashes alone miss, and drops look-alikes they do not.",
    )
    candidate_radius: int = pydantic.Field(
        default=12, ge=0, le=20, description="Hash distance (bits) of the pairs verified."
    )
    flips: bool = pydantic.Field(default=True, description="Also match mirrored copies.")
    max_verified_pairs: int = pydantic.Field(
        default=200_000,
        ge=0,
        description="Most candidate pairs verified per run (closest first): bounds the cost.",
    )
    workers: int = _workers("verifying candidate pairs")
    pool: PoolKind = _pool("candidate pairs")
    keep: Literal["best", "earliest"] = pydantic.Field(
        default="best",
        description="best = the likely original: most pixels, then lossless or highest JPEG "
        "quality, then most bytes per pixel, then not a rotation or crop of another, then "
        "sharpest; earliest = first by source path.",
    )
    max_duplicate_ratio: float | None = _max_ratio("duplicates", "duplicate_ratio")
    against: list[str] = pydantic.Field(
        default_factory=list,
        description="Request ids of datasets already built: their kept images count as "
        "originals, so matches here are dropped as duplicates.",
    )

    @pydantic.field_validator("against")
    @classmethod
    def _safe_ids(cls, value: list[str]) -> list[str]:
        return [check_request_id(item) for item in value]


class TransformConfig(Config):
    """The request's operations, applied in order to every kept image."""

    operations: list[Any] = pydantic.Field(
        default_factory=list,
        max_length=MAX_OPERATIONS,
        description='Seed format: ["GrayScale", {"Resize": {"scaling_factor": 0.5}}].',
    )
    seed: int = pydantic.Field(
        default=0, ge=0, le=MAX_SEED, description="Seeds random operations per image."
    )
    output_format: OutputFormat = pydantic.Field(
        default="source", description="Format of the processed images; source keeps each one's."
    )
    quality: int = pydantic.Field(
        default=90, ge=1, le=100, description="JPEG / WebP quality of the processed images."
    )
    images_per_shard: int = pydantic.Field(
        default=IMAGES_PER_SHARD,
        ge=4,
        le=100_000,
        description="Images per shard step; never one step per image.",
    )
    workers: int = _workers()
    pool: PoolKind = _pool()

    @pydantic.field_validator("operations")
    @classmethod
    def _known_operations(cls, value: list[Any]) -> list[Any]:
        OperationPipeline.parse(value)
        return value

    @property
    def pipeline(self) -> OperationPipeline:
        return OperationPipeline.parse(self.operations)

    @property
    def plan(self) -> TransformPlan:
        return TransformPlan(self.pipeline, self.seed, self.output_format, self.quality)


class LabelConfig(Config):
    """Where labels come from and which label files are written."""

    source: Literal["folder", "manifest", "pattern", "none"] = pydantic.Field(
        default="folder",
        description="folder = parent folder name; manifest = a file in the dataset; pattern = a "
        "regex on the file name; none = no labels.",
    )
    manifest: str | None = pydantic.Field(
        default=None, description="CSV (image,label) or JSON {image: label} inside the dataset."
    )
    pattern: str | None = pydantic.Field(
        default=None, description="Regex on the file name with a group named 'label'."
    )
    formats: list[str] = pydantic.Field(
        default=["txt", "json", "csv"], description="Any of txt (one file per image), json, csv."
    )

    @pydantic.model_validator(mode="after")
    def _source_settings(self) -> "LabelConfig":
        unknown = sorted(set(self.formats) - {"txt", "json", "csv"})
        if unknown:
            raise ValueError(f"labels.formats {unknown} unknown: use txt, json, csv")
        if self.source == "manifest" and not self.manifest:
            raise ValueError("labels.source 'manifest' needs labels.manifest (a CSV or JSON file)")
        if self.manifest is not None and (problem := unsafe_reason(self.manifest)):
            raise ValueError(f"labels.manifest names a file inside the dataset: {problem}")
        if self.source == "pattern" and not self.pattern:
            raise ValueError("labels.source 'pattern' needs labels.pattern")
        if (
            self.pattern is not None
            and "label" not in compile_label_pattern(self.pattern).groupindex
        ):
            raise ValueError(f"labels.pattern {self.pattern!r} has no (?P<label>...) group")
        return self


class TieringConfig(Config):
    """Which images stay in hot storage; the order is the source path order."""

    hot_storage_threshold: int = pydantic.Field(
        default=1000,
        ge=0,
        description="The first N images (by source path) go to hot/, the rest to cold/.",
    )
    webdataset_shard_size: int = pydantic.Field(
        default=0, ge=0, description="Also write WebDataset tar shards of N images; 0 = off."
    )
    parquet_shard_rows: int = pydantic.Field(
        default=0,
        ge=0,
        description="Also write Parquet files of N images (bytes + metadata columns); 0 = off.",
    )


class ReportConfig(Config):
    """How much the HTML report shows."""

    max_thumbnails_per_reason: int = pydantic.Field(
        default=24, ge=0, description="Reject thumbnails shown per reject reason."
    )
    max_duplicate_clusters: int = pydantic.Field(
        default=24, ge=0, description="Duplicate clusters shown, in source path order."
    )


class DatasetRequest(pydantic.BaseModel):
    """A request to build one dataset; the seed format plus optional stage settings."""

    model_config = pydantic.ConfigDict(extra="forbid")

    request_id: str | None = pydantic.Field(
        default=None,
        description="The partition key, 1-128 of A-Z a-z 0-9 . _ -; derived from the source and "
        "the content when left out.",
    )
    dataset_key: str
    operations: list[Any] = pydantic.Field(default_factory=list, max_length=MAX_OPERATIONS)
    validation_mode: ValidationMode = "lenient"
    seed: int = pydantic.Field(default=0, ge=0, le=MAX_SEED)
    output_format: OutputFormat = "source"
    output_quality: int = pydantic.Field(default=90, ge=1, le=100)
    validation: dict[str, Any] = pydantic.Field(default_factory=dict)
    dedup: dict[str, Any] = pydantic.Field(default_factory=dict)
    labels: dict[str, Any] = pydantic.Field(default_factory=dict)
    tiering: dict[str, Any] = pydantic.Field(default_factory=dict)
    report: dict[str, Any] = pydantic.Field(default_factory=dict)
    ingest: dict[str, Any] = pydantic.Field(default_factory=dict)
    transform: dict[str, Any] = pydantic.Field(default_factory=dict)

    @pydantic.field_validator("request_id")
    @classmethod
    def _safe_request_id(cls, value: str | None) -> str | None:
        return None if value is None else check_request_id(value)

    @pydantic.field_validator("dataset_key")
    @classmethod
    def _non_empty_key(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                "dataset_key is empty: name a folder, .zip or .tar of images, or a URL list"
            )
        return value

    @pydantic.field_validator("operations")
    @classmethod
    def _known_operations(cls, value: list[Any]) -> list[Any]:
        return OperationPipeline.parse(value).to_spec()

    @property
    def id(self) -> str:
        """The partition key: the given request_id, else a stable name from dataset and content."""
        if self.request_id:
            return self.request_id
        stem = PurePosixPath(self.dataset_key.rstrip("/")).name
        for suffix in (".tar.gz", ".tgz", ".zip", ".tar"):
            stem = stem.removesuffix(suffix)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")[:80] or "dataset"
        digest = hashlib.sha256(self.model_dump_json(exclude={"request_id"}).encode()).hexdigest()
        return f"{slug}-{digest[:8]}"

    def stage_configs(self) -> dict[str, Config]:
        """Each stage's `Config`, built (and so validated) from this request."""
        sections: dict[str, tuple[str, type[Config], dict[str, Any]]] = {
            "raw_images": (
                "ingest",
                IngestConfig,
                {"dataset_key": self.dataset_key, **self.ingest},
            ),
            "validated_images": (
                "validation",
                ValidationConfig,
                {"mode": self.validation_mode, **self.validation},
            ),
            "deduplicated_images": ("dedup", DedupConfig, self.dedup),
            "processed_images": (
                "transform",
                TransformConfig,
                {
                    "operations": self.operations,
                    "seed": self.seed,
                    "output_format": self.output_format,
                    "quality": self.output_quality,
                    **self.transform,
                },
            ),
            "labels": ("labels", LabelConfig, self.labels),
            "tiered_storage": ("tiering", TieringConfig, self.tiering),
            "quality_report": ("report", ReportConfig, self.report),
        }
        configs = {}
        for stage, (name, config_class, values) in sections.items():
            _refuse_unknown(values, config_class.model_fields, name)
            try:
                configs[stage] = config_class(**values)
            except pydantic.ValidationError as error:
                raise RequestError(_describe(error, prefix=name)) from None
        return configs

    def to_run_config(self) -> RunConfig:
        """The run config of `process_dataset`; sharded stages take theirs on the planning op."""
        ops: dict[str, Any] = {}
        for stage, config in self.stage_configs().items():
            if stage in SHARDED_STAGES:
                ops[stage] = {"ops": {SHARDED_STAGES[stage]: {"config": config.model_dump()}}}
            else:
                ops[stage] = {"config": config.model_dump()}
        return RunConfig(ops=ops)


SHARDED_STAGES = {
    "validated_images": "plan_validation_shards",
    "processed_images": "plan_transform_shards",
}


def parse_request(payload: str | bytes | dict[str, Any]) -> DatasetRequest:
    """Parse a request from JSON text or a dict, turning every problem into one `RequestError`.

    The cost is bounded before any parsing: text over `MAX_REQUEST_BYTES` or nested deeper than
    `MAX_JSON_DEPTH` is refused from a linear scan, so no message can exhaust memory or the stack.
    """
    if isinstance(payload, str | bytes):
        payload = load_request_json(payload)
    elif _depth(payload) > MAX_JSON_DEPTH:
        raise RequestError(f"request is nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(payload, dict):
        raise RequestError(f"request must be a JSON object, got {type(payload).__name__}")
    try:
        request = DatasetRequest.model_validate(payload)
        request.stage_configs()
    except pydantic.ValidationError as error:
        raise RequestError(_describe(error)) from None
    return request


def run_config_section(run_config: dict[str, Any], stage: str) -> dict[str, Any]:
    """The config fields a run's config gives one stage (sharded stages: their planning op)."""
    entry = run_config.get("ops", {}).get(stage, {})
    if stage in SHARDED_STAGES:
        entry = entry.get("ops", {}).get(SHARDED_STAGES[stage], {})
    return dict(entry.get("config") or {})


def request_from_run_config(run_config: dict[str, Any], request_id: str) -> DatasetRequest:
    """Rebuild the request from a run's config, so runs started from YAML are checked up front."""
    return request_from_sections(
        {stage: run_config_section(run_config, stage) for stage in run_config.get("ops", {})},
        request_id,
    )


def request_from_sections(sections: dict[str, dict[str, Any]], request_id: str) -> DatasetRequest:
    """The request whose `stage_configs()` are `sections` (stage -> config fields)."""
    ingest = dict(sections.get("raw_images", {}))
    validation = dict(sections.get("validated_images", {}))
    transform = dict(sections.get("processed_images", {}))
    if "dataset_key" not in ingest:
        raise RequestError("run config ops.raw_images.config.dataset_key is missing")
    return parse_request(
        {
            "request_id": request_id,
            "dataset_key": ingest.pop("dataset_key"),
            "ingest": ingest,
            "operations": transform.pop("operations", []),
            "seed": transform.pop("seed", 0),
            "output_format": transform.pop("output_format", "source"),
            "output_quality": transform.pop("quality", 90),
            "transform": transform,
            "validation_mode": validation.pop("mode", "lenient"),
            "validation": validation,
            "dedup": sections.get("deduplicated_images", {}),
            "labels": sections.get("labels", {}),
            "tiering": sections.get("tiered_storage", {}),
            "report": sections.get("quality_report", {}),
        }
    )


def load_request_json(text: str | bytes) -> Any:
    if len(text) > MAX_REQUEST_BYTES:
        raise RequestError(f"request is {len(text)} bytes, over the limit of {MAX_REQUEST_BYTES}")
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(f"request is not UTF-8 text: {error}") from None
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    steps = (1 if bracket in "[{" else -1 for bracket in brackets)
    if max(itertools.accumulate(steps), default=0) > MAX_JSON_DEPTH:
        raise RequestError(f"request is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except ValueError as error:
        raise RequestError(f"request is not valid JSON: {error}") from None


def _depth(value: Any, level: int = 0) -> int:
    """How deeply `value` nests lists and dicts, counted no further than just past the limit."""
    if level > MAX_JSON_DEPTH or not isinstance(value, dict | list):
        return level
    items = value.values() if isinstance(value, dict) else value
    return max((_depth(item, level + 1) for item in items), default=level + 1)


def _refuse_unknown(values: dict[str, Any], known: Iterable[str], section: str) -> None:
    """Name every key a section does not have, with the closest known one; a misspelt limit
    must not be ignored silently."""
    problems = []
    for key in sorted(set(values) - set(known), key=str):
        where = f"{section}.{key}" if section else str(key)
        if key in POLICY_ONLY:
            problems.append(
                f"{where} is deployment policy ({POLICY_ONLY[key]}), not a request setting"
            )
            continue
        close = difflib.get_close_matches(str(key), list(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(known)}"
        problems.append(f"{where}: unknown setting{hint}")
    if problems:
        raise RequestError("; ".join(problems))


def _describe(error: pydantic.ValidationError, prefix: str = "") -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "") or "request"
        if item["type"] == "extra_forbidden" and not prefix:
            known = DatasetRequest.model_fields
            close = difflib.get_close_matches(str(item["loc"][-1]), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{where}: unknown setting{hint}")
            continue
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        shown = json.dumps(value, default=str)[:80] if value is not None else "missing"
        problems.append(f"{where}: {message} (got {shown})")
    return "; ".join(problems)
