"""The reference documentation is generated from the code and checked in up to date."""

import subprocess
import sys
from pathlib import Path

from dataset_assets.operations import OPERATIONS
from dataset_assets.reference import configuration_markdown, request_parameters
from dataset_assets.request import DatasetRequest
from dataset_assets_tests.readme import ROOT


def test_the_checked_in_configuration_reference_is_current():
    checked_in = (ROOT / "docs" / "configuration.md").read_text()
    assert checked_in == configuration_markdown(), (
        "docs/configuration.md is stale: python -m dataset_assets.reference > docs/configuration.md"
    )


def test_every_request_field_has_a_type_a_default_and_a_meaning():
    sections = dict(request_parameters())
    documented = {row.name for row in sections["top level"]} | set(sections) - {"top level"}
    assert documented == set(DatasetRequest.model_fields)
    for section, rows in sections.items():
        for row in rows:
            assert row.type and row.default and row.meaning, (section, row)
    threshold = next(row for row in sections["dedup"] if row.name == "threshold")
    assert (threshold.type, threshold.default, threshold.range) == ("int", "6", ">= 0, <= 32")


def test_operations_command_prints_every_operation_with_its_parameters():
    command = [str(Path(sys.executable).with_name("dataset-assets")), "operations"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    for name in OPERATIONS:
        assert any(line.startswith(f"{name} ") for line in out.splitlines()), name
    assert "    scaling_factor   float or null (default null, > 0, <= 8)" in out.splitlines()
    assert '    direction        "horizontal" | "vertical" (required)' in out
