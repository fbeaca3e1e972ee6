"""Deployment policy: what any request may read and use at most, set by the deployment alone.

A request is untrusted input. Whoever can write to the requests topic chooses its fields, so the
limits that protect the cluster (which sources may be read, private-host access, file sizes,
pixels, outputs per image, files per dataset, download concurrency) come from this resource,
built from the environment (`policy_from_env`), never from a request. A request may tighten a
limit and never loosen one: `DeploymentPolicy.apply` fills each limit the request leaves out
with the smaller of its default and the ceiling, and refuses a request that asks for more, or
whose operations could make more outputs or pixels per image than the ceilings allow.

Local paths and S3 prefixes are readable only under `source_roots` (none by default), except for
the operator's own command line, which runs with `operator` set and may name any source its user
can read.
"""

import os
from pathlib import Path
from typing import Any

import pydantic
from dagster import ConfigurableResource

from dataset_assets.ingest.locate import source_url
from dataset_assets.ingest.s3_sources import is_s3_url
from dataset_assets.request import DatasetRequest, RequestError

MiB = 1024 * 1024

CEILINGS = {
    "max_file_bytes": ("ingest", "max_file_bytes"),
    "max_files": ("ingest", "max_files"),
    "max_download_workers": ("ingest", "download_workers"),
    "max_pixels": ("validation", "max_pixels"),
}
"""Each policy ceiling and the request setting (section, field) it caps."""


class DeploymentPolicy(ConfigurableResource):
    """Limits every request runs under; set by the deployment's environment, never by a request."""

    source_roots: list[str] = pydantic.Field(
        default_factory=list,
        description="Local folders and s3://bucket/prefix/ roots a request may read from.",
    )
    operator: bool = pydantic.Field(
        default=False,
        description="The operator's own command line: any source its user can read.",
    )
    allow_private_hosts: bool = pydantic.Field(
        default=False,
        description="URL lists may fetch from loopback, private and link-local addresses.",
    )
    max_file_bytes: int = pydantic.Field(default=256 * MiB, gt=0)
    max_files: int = pydantic.Field(default=1_000_000, gt=0, description="Files per dataset.")
    max_download_workers: int = pydantic.Field(default=64, gt=0)
    max_pixels: int = pydantic.Field(
        default=100_000_000, gt=0, description="Largest source image a request may accept."
    )
    max_outputs_per_image: int = pydantic.Field(default=1_000, gt=0)
    max_output_pixels: int = pydantic.Field(
        default=200_000_000,
        gt=0,
        description="Pixels all outputs of one source image may hold at their worst case.",
    )

    def apply(self, request: DatasetRequest) -> DatasetRequest:
        """`request` with every limit within the ceilings; a `RequestError` naming each setting
        that asks for more, and the source when it is outside the readable roots."""
        sections: dict[str, dict[str, Any]] = {
            "ingest": dict(request.ingest),
            "validation": dict(request.validation),
        }
        problems = []
        configs = request.stage_configs()
        defaults = {"ingest": configs["raw_images"], "validation": configs["validated_images"]}
        for ceiling, (section, field) in CEILINGS.items():
            limit = getattr(self, ceiling)
            asked = sections[section].get(field)
            if asked is not None and asked > limit:
                problems.append(
                    f"{section}.{field}={asked} is over the deployment's limit of {limit}"
                )
            wanted = getattr(defaults[section], field) if asked is None else asked
            sections[section][field] = min(wanted, limit)
        applied = request.model_copy(update=sections)
        problems += self._output_problems(applied)
        location = self.source_problem(source_url(request.dataset_key))
        if location:
            problems.append(location)
        if problems:
            raise RequestError("; ".join(problems))
        return applied

    def _output_problems(self, request: DatasetRequest) -> list[str]:
        """The operations' worst case, from the largest image validation lets through."""
        configs = request.stage_configs()
        validation = configs["validated_images"]
        pipeline = configs["processed_images"].pipeline
        bound = pipeline.bound(validation.max_width, validation.max_height, validation.max_pixels)
        source = (
            f"from a source image of up to {validation.max_width}x{validation.max_height} and "
            f"{validation.max_pixels:,} pixels"
        )
        problems = []
        if bound.outputs > self.max_outputs_per_image:
            problems.append(
                f"operations could make {bound.outputs:,} outputs {source}, over the "
                f"deployment's limit of {self.max_outputs_per_image:,} per image"
            )
        if bound.total_pixels > self.max_output_pixels:
            problems.append(
                f"operations could make {bound.total_pixels:,} output pixels {source}, over the "
                f"deployment's limit of {self.max_output_pixels:,} per image: start with "
                '{"Resize": {"max_side": N}} or lower validation.max_width, max_height, '
                "max_pixels"
            )
        return problems

    def source_problem(self, url: str) -> str | None:
        """Why a request may not read `url` (a local path or s3:// URL), or None when it may."""
        if self.operator:
            return None
        if is_s3_url(url):
            parts = url.removeprefix("s3://").split("/")
            if ".." in parts or "." in parts:
                return f"dataset_key {url!r} holds '.' or '..' segments"
            allowed = [root for root in self.source_roots if is_s3_url(root)]
            if any(f"{url}/".startswith(_as_prefix(root)) for root in allowed):
                return None
            where = ", ".join(allowed) or "none are configured"
            return (
                f"dataset_key {url!r} is outside the S3 roots requests may read ({where}; "
                "DATASET_ASSETS_SOURCE_ROOTS)"
            )
        path = Path(url).resolve()
        roots = [Path(root).resolve() for root in self.source_roots if not is_s3_url(root)]
        if any(path.is_relative_to(root) for root in roots):
            return None
        where = ", ".join(map(str, roots)) or "none are configured"
        return (
            f"dataset_key {url!r} is a local path outside the folders requests may read "
            f"({where}; DATASET_ASSETS_SOURCE_ROOTS)"
        )


def _as_prefix(root: str) -> str:
    return root if root.endswith("/") else f"{root}/"


def policy_from_env(*, operator: bool = False) -> DeploymentPolicy:
    """The policy the deployment's environment sets; unset variables keep the defaults.

    `DATASET_ASSETS_SOURCE_ROOTS` is a comma-separated list of folders and s3:// prefixes;
    `DATASET_ASSETS_SOURCE_BUCKET`, which resolves seed-style keys, is readable too.
    `DATASET_ASSETS_ALLOW_PRIVATE_HOSTS=1` lets URL lists reach private addresses, and
    `DATASET_ASSETS_MAX_<CEILING>` sets a ceiling (e.g. `DATASET_ASSETS_MAX_FILE_BYTES`).
    """
    roots = [root.strip() for root in os.environ.get("DATASET_ASSETS_SOURCE_ROOTS", "").split(",")]
    bucket = os.environ.get("DATASET_ASSETS_SOURCE_BUCKET")
    if bucket:
        roots.append(f"s3://{bucket}/")
    ceilings: dict[str, Any] = {}
    for name in DeploymentPolicy.model_fields:
        value = os.environ.get(f"DATASET_ASSETS_{name.upper()}")
        if name.startswith("max_") and value:
            try:
                ceilings[name] = int(value)
            except ValueError:
                raise ValueError(
                    f"DATASET_ASSETS_{name.upper()}={value!r} is not an integer"
                ) from None
    return DeploymentPolicy(
        source_roots=[root for root in roots if root],
        operator=operator,
        allow_private_hosts=os.environ.get("DATASET_ASSETS_ALLOW_PRIVATE_HOSTS", "") in TRUE,
        **ceilings,
    )


TRUE = frozenset({"1", "true", "yes"})
