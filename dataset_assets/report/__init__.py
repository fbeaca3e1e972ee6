"""The self-contained HTML quality report a pipeline run ends with."""

from dataset_assets.report.html import render_report_html
from dataset_assets.report.score import QUALITY_SCORE_FORMULA, histogram, quality_score

__all__ = ["QUALITY_SCORE_FORMULA", "histogram", "quality_score", "render_report_html"]
