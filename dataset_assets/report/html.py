"""Render a run's quality report as one self-contained HTML page.

The page carries everything it shows: inline CSS, inline SVG charts and thumbnails as
``data:image/...`` URIs, so it can be attached to a ticket, mailed or opened offline. Every string
taken from the report (file names, messages, labels) is escaped: file names are user input.
"""

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from dataset_assets.report.score import QUALITY_SCORE_FORMULA

METRIC_LABELS = {
    "images_ingested": "Images ingested",
    "images_validated": "Images validated",
    "valid_images": "Valid images",
    "invalid_images": "Invalid images",
    "duplicates_found": "Duplicates found",
    "duplicates_removed": "Duplicates removed",
    "unique_images": "Unique images",
    "processed_images": "Processed images",
    "output_files": "Output files",
    "labelled_images": "Labelled images",
    "hot": "Hot storage tier",
    "cold": "Cold storage tier",
}

HISTOGRAM_AXES = {
    "width": ("Width", "width (px)"),
    "height": ("Height", "height (px)"),
    "aspect": ("Aspect ratio", "width ÷ height"),
    "brightness": ("Brightness", "mean brightness (0 to 255)"),
}

REASON_COLOURS = (
    "#d64545",
    "#e07b24",
    "#b7950b",
    "#8e44ad",
    "#2f80ed",
    "#16a085",
    "#c2185b",
    "#5d6d7e",
)

NAVIGATION = (
    ("summary", "Summary"),
    ("stages", "Stages"),
    ("rejects", "Rejects"),
    ("issues", "Issues"),
    ("duplicates", "Duplicates"),
    ("histograms", "Histograms"),
    ("labels", "Labels"),
    ("operations", "Operations"),
)

ACCENT = "#3b6fd8"
ISSUE_COLOUR = "#e07b24"

STYLE = """
*{box-sizing:border-box}
.stopped{background:#fdecea;border:1px solid #e0a39c;color:#8a1c12;padding:10px 14px;
 border-radius:8px;margin:0 0 14px}
table.gates{margin-top:16px;border-collapse:collapse}
table.gates td,table.gates th{padding:4px 12px;text-align:left;border-bottom:1px solid #e3e7ee}
.gate-warning{color:#9a6700;font-weight:600}.gate-stopped{color:#8a1c12;font-weight:600}
.gate-passed{color:#1a7f37}
body{margin:0;background:#f3f5f9;color:#1f2933;
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#1f2a44;color:#fff;padding:28px 0 0}
.wrap{max-width:1180px;margin:0 auto;padding:0 24px}
header h1{margin:0;font-size:26px;font-weight:650;letter-spacing:-.01em;word-break:break-all}
header .meta{color:#b8c2d8;font-size:13px;margin-top:4px}
header .meta code{color:#dfe6f5}
nav{display:flex;flex-wrap:wrap;gap:4px;margin-top:18px}
nav a{color:#dfe6f5;text-decoration:none;font-size:13px;padding:8px 12px;
 border-radius:8px 8px 0 0}
nav a:hover{background:#2c3a5c}
main.wrap{padding-top:24px;padding-bottom:16px}
section{background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(16,24,40,.08);
 padding:20px 24px 24px;margin-bottom:20px}
h2{margin:0 0 4px;font-size:19px;font-weight:650}
h3{margin:18px 0 8px;font-size:15px;font-weight:600}
.lead{color:#52606d;font-size:13px;margin:0 0 14px}
.empty{color:#7b8794;font-style:italic;margin:8px 0}
table{border-collapse:collapse;width:100%;font-size:14px}
th{text-align:left;font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:#7b8794;
 font-weight:600;border-bottom:1px solid #e4e7eb;padding:6px 10px}
td{border-bottom:1px solid #f0f2f5;padding:7px 10px;vertical-align:middle}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total td{font-weight:600;border-bottom:0}
.summary-grid{display:grid;grid-template-columns:minmax(260px,1fr) 2fr;gap:24px;align-items:start}
.score{border-radius:12px;padding:20px;color:#fff}
.score .value{font-size:64px;font-weight:700;line-height:1;letter-spacing:-.02em}
.score .value small{font-size:22px;font-weight:500;opacity:.85}
.score .caption{text-transform:uppercase;font-size:12px;letter-spacing:.08em;opacity:.85;
 margin-bottom:8px}
.score .formula{font-size:13px;margin-top:12px;opacity:.95}
.score .parts{font-size:12px;margin-top:8px;opacity:.85}
.counts{display:grid;grid-template-columns:1fr 1fr;gap:24px}
.chip{display:inline-block;padding:1px 9px;border-radius:999px;color:#fff;font-size:12px;
 font-weight:600;white-space:nowrap}
.badge{display:inline-block;padding:0 7px;border-radius:4px;font-size:11px;font-weight:700;
 text-transform:uppercase;letter-spacing:.04em}
.kept{background:#1e8e3e;color:#fff}
.removed{background:#e4e7eb;color:#52606d}
.exact{background:#dbe7fd;color:#1d4ed8}
.near{background:#efe3fb;color:#7e22ce}
.thumbs{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;width:140px}
figure img,.placeholder{display:block;width:140px;height:140px;border-radius:8px;
 background:#eef1f5;object-fit:contain}
.placeholder{display:flex;align-items:center;justify-content:center;text-align:center;
 border:2px dashed;font-size:12px;font-weight:600;padding:8px;word-break:break-all}
figcaption{font-size:12px;margin-top:6px;line-height:1.35}
figcaption .name{font-weight:600;word-break:break-all}
figcaption .msg{color:#52606d;word-break:break-word}
figcaption .status{margin:3px 0 1px}
figure.is-kept img,figure.is-kept .placeholder{outline:3px solid #1e8e3e;outline-offset:2px}
.group{border-left:4px solid;padding:2px 0 6px 14px;margin:18px 0}
.group h3{margin-top:4px;display:flex;align-items:center;gap:10px;flex-wrap:wrap}
.group h3 .desc{font-weight:400;color:#52606d}
.cluster{border:1px solid #e4e7eb;border-radius:10px;padding:12px 14px 14px;margin:12px 0}
.cluster .head{display:flex;gap:10px;align-items:center;font-size:13px;margin-bottom:10px;
 flex-wrap:wrap}
.cluster .head code{font-weight:600}
.charts{display:grid;grid-template-columns:repeat(2,1fr);gap:18px}
.chart{border:1px solid #eef1f5;border-radius:10px;padding:10px 12px}
.chart h3{margin:0 0 6px}
svg text{font-family:inherit}
td svg{max-width:100%;height:auto}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;
 word-break:break-all}
ol.ops{margin:8px 0 0;padding-left:22px;font-size:13px}
ol.ops li{margin:3px 0}
footer{color:#7b8794;font-size:12px;text-align:center;padding-bottom:24px}
@media (max-width:800px){.summary-grid,.counts,.charts{grid-template-columns:1fr}}
"""


def render_report_html(report: Mapping[str, Any]) -> str:
    """Return the report as a complete HTML document.

    ``report`` follows the report schema built by the pipeline's last stage: metrics, stages,
    reject reasons and samples, quality issues, histograms, labels, duplicate clusters and
    operations. Every section is present with an ``id`` (``summary``, ``stages``, ``rejects``,
    ``issues``, ``duplicates``, ``histograms``, ``labels``, ``operations``); a section with nothing
    to show says so instead of disappearing. Thumbnails that are not ``data:image/`` URIs are
    shown as placeholders, so the page never loads anything from elsewhere.
    """
    dataset = str(report.get("dataset") or "dataset")
    reason_colours = _reason_colours(report)
    sections = [
        _summary_section(report),
        _stages_section(report.get("stages") or []),
        _rejects_section(report, reason_colours),
        _issues_section(report.get("quality_issues") or {}, report.get("flagged_images") or []),
        _duplicates_section(report.get("duplicate_clusters") or [], report.get("metrics") or {}),
        _histograms_section(report.get("histograms") or {}),
        _labels_section(report.get("labels") or {}, report.get("label_imbalance")),
        _operations_section(
            report.get("operations") or [], report.get("operations_fingerprint") or ""
        ),
    ]
    nav = "".join(f'<a href="#{anchor}">{title}</a>' for anchor, title in NAVIGATION)
    request_id = _e(report.get("request_id") or "")
    generated_at = _e(report.get("generated_at") or "")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Quality report · {_e(dataset)}</title>"
        f"<style>{STYLE}</style></head><body>"
        '<header><div class="wrap">'
        f"<h1>Quality report · {_e(dataset)}</h1>"
        f'<div class="meta">request <code>{request_id}</code> · generated {generated_at}</div>'
        f"<nav>{nav}</nav></div></header>"
        f'<main class="wrap">{"".join(sections)}</main>'
        f"<footer>{_e(dataset)} · request {request_id} · {generated_at}</footer>"
        "</body></html>\n"
    )


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else _e(value)


def _number(value: float) -> str:
    """Format a chart tick compactly: whole numbers plain, small fractions with two decimals."""
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:04.1f} s"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "—"


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


def _section(anchor: str, title: str, lead: str, body: str) -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{lead_html}{body}</section>'


def _thumbnail_uri(thumbnail: object) -> str | None:
    if isinstance(thumbnail, str) and thumbnail[:11].lower() == "data:image/":
        return thumbnail
    return None


def _figure(
    source: str, thumbnail: object, placeholder: str, colour: str, caption: str, css: str = ""
) -> str:
    """One thumbnail card: the image, or a dashed box naming ``placeholder`` when there is none."""
    uri = _thumbnail_uri(thumbnail)
    if uri is None:
        picture = (
            f'<div class="placeholder" style="border-color:{colour};color:{colour}">'
            f"{_e(placeholder)}</div>"
        )
    else:
        picture = f'<img src="{_e(uri)}" alt="{_e(source)}" loading="eager">'
    class_attr = f' class="{css}"' if css else ""
    return (
        f'<figure{class_attr} title="{_e(source)}">{picture}'
        f'<figcaption><div class="name">{_e(source)}</div>{caption}</figcaption></figure>'
    )


def _score_colour(score: float) -> str:
    if score >= 90:
        return "#1e8e3e"
    if score >= 70:
        return "#c77700"
    return "#c62828"


def _summary_section(report: Mapping[str, Any]) -> str:
    metrics = report.get("metrics") or {}
    score = float(metrics.get("quality_score") or 0.0)
    formula = report.get("quality_score_formula") or QUALITY_SCORE_FORMULA
    ingested = int(metrics.get("images_ingested") or 0)
    valid = int(metrics.get("valid_images") or 0)
    unique = int(metrics.get("unique_images") or 0)
    parts = (
        f"validity {_percent(valid, ingested)} ({valid:,} of {ingested:,} ingested were valid)"
        f" &times; uniqueness {_percent(unique, valid)} ({unique:,} of {valid:,} valid were unique)"
    )
    score_card = (
        f'<div class="score" style="background:{_score_colour(score)}">'
        '<div class="caption">Quality score</div>'
        f'<div class="value">{score:.1f}<small> / 100</small></div>'
        f'<div class="formula">{_e(formula)}</div>'
        f'<div class="parts">{parts}</div></div>'
    )
    keys = [key for key in METRIC_LABELS if key in metrics] + [
        key for key in metrics if key not in METRIC_LABELS and key != "quality_score"
    ]
    half = (len(keys) + 1) // 2
    tables = "".join(_counts_table(metrics, part) for part in (keys[:half], keys[half:]) if part)
    counts = f'<div class="counts">{tables}</div>' if tables else _empty("No counts recorded")
    body = f'<div class="summary-grid">{score_card}{counts}</div>{_gates(report)}'
    return _section("summary", "Summary", _stopped(report.get("stopped_by")), body)


def _stopped(stopped_by: Mapping[str, Any] | None) -> str:
    """The banner of a run that a gate or strict validation stopped."""
    if not stopped_by:
        return ""
    return (
        f'<div class="stopped"><strong>Run stopped by {_e(stopped_by.get("gate"))}</strong> '
        f"(<code>{_e(stopped_by.get('field'))}</code>): {_e(stopped_by.get('message'))}. "
        "The figures below are those of the stages that ran.</div>"
    )


def _gates(report: Mapping[str, Any]) -> str:
    """One row per quality gate: what it saw, its threshold and whether it passed or warned."""
    gates = report.get("gates") or []
    if not gates:
        return ""
    rows = "".join(
        f"<tr><td>{_e(gate.get('gate'))}</td><td><code>{_e(gate.get('field'))}</code></td>"
        f'<td class="num">{float(gate.get("value") or 0):.2f}</td>'
        f'<td class="num">{float(gate.get("threshold") or 0):.2f}'
        f"{'' if gate.get('explicit') else ' (default)'}</td>"
        f'<td class="gate-{_e(str(gate.get("outcome", "")).split()[0])}">'
        f"{_e(gate.get('outcome'))}</td></tr>"
        for gate in gates
    )
    return (
        '<table class="gates"><thead><tr><th>gate</th><th>request field</th><th>value</th>'
        f"<th>threshold</th><th>outcome</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _counts_table(metrics: Mapping[str, Any], keys: Sequence[str]) -> str:
    rows = "".join(
        f'<tr><td>{_e(METRIC_LABELS.get(key, key))}</td><td class="num">{_count(metrics[key])}</td>'
        "</tr>"
        for key in keys
    )
    return (
        '<table><thead><tr><th>Count</th><th class="num">Value</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _inline_bar(fraction: float, colour: str, width: int = 140) -> str:
    filled = max(0.0, min(fraction, 1.0)) * width
    return (
        f'<svg width="{width}" height="10" viewBox="0 0 {width} 10" aria-hidden="true">'
        f'<rect width="{width}" height="10" rx="3" fill="#eef1f5"/>'
        f'<rect width="{filled:.1f}" height="10" rx="3" fill="{colour}"/></svg>'
    )


def _stages_section(stages: Sequence[Mapping[str, Any]]) -> str:
    if not stages:
        return _section("stages", "Stages", "", _empty("No stages recorded"))
    durations = [stage.get("duration_s") for stage in stages]
    known = [duration for duration in durations if duration is not None]
    longest = max(known, default=0.0)
    rows = "".join(
        f"<tr><td>{_e(stage.get('stage', ''))}</td>"
        f'<td class="num">{_count(stage.get("count", 0))}</td>'
        f'<td class="num">{_duration(stage.get("duration_s"))}</td>'
        f"<td>{_inline_bar((stage.get('duration_s') or 0.0) / longest if longest else 0.0, ACCENT)}"
        "</td></tr>"
        for stage in stages
    )
    total = (
        f'<tr class="total"><td>Total</td><td></td><td class="num">{_duration(sum(known))}</td>'
        "<td></td></tr>"
        if known
        else ""
    )
    body = (
        '<table><thead><tr><th>Stage</th><th class="num">Images</th>'
        '<th class="num">Duration</th><th>Time share</th></tr></thead>'
        f"<tbody>{rows}{total}</tbody></table>"
    )
    return _section("stages", "Stages", "Images out of each stage and its wall time.", body)


def _reason_colours(report: Mapping[str, Any]) -> dict[str, str]:
    codes = set(report.get("reject_reasons") or {})
    codes.update(str(reject.get("reason", "")) for reject in report.get("rejects") or [])
    return {
        code: REASON_COLOURS[index % len(REASON_COLOURS)]
        for index, code in enumerate(sorted(codes))
    }


def _chip(text: str, colour: str) -> str:
    return f'<span class="chip" style="background:{colour}">{_e(text)}</span>'


def _rejects_section(report: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    counts: Mapping[str, int] = report.get("reject_reasons") or {}
    descriptions: Mapping[str, str] = report.get("reason_descriptions") or {}
    rejects: Sequence[Mapping[str, Any]] = report.get("rejects") or []
    if not counts and not rejects:
        return _section("rejects", "Rejected images", "", _empty("No rejected images"))
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for reject in rejects:
        groups.setdefault(str(reject.get("reason", "")), []).append(reject)
    order = sorted(counts, key=lambda code: (-counts[code], code)) + sorted(
        code for code in groups if code not in counts
    )
    total = sum(counts.values())
    most = max(counts.values(), default=0)
    rows = "".join(
        f"<tr><td>{_chip(code, colours[code])}</td><td>{_e(descriptions.get(code, ''))}</td>"
        f'<td class="num">{_count(counts.get(code, len(groups.get(code, []))))}</td>'
        f"<td>{_inline_bar(counts.get(code, 0) / most if most else 0.0, colours[code])}</td></tr>"
        for code in order
    )
    table = (
        '<table><thead><tr><th>Reason</th><th>Description</th><th class="num">Images</th>'
        f"<th></th></tr></thead><tbody>{rows}</tbody></table>"
    )
    group_html = "".join(
        _reject_group(code, groups[code], counts.get(code), descriptions.get(code, ""), colours)
        for code in order
        if code in groups
    )
    samples = group_html or _empty("No rejected image samples kept")
    lead = f"{total:,} images rejected, by reason code; samples of each reason below."
    return _section("rejects", "Rejected images", lead, table + samples)


def _reject_group(
    code: str,
    rejects: Sequence[Mapping[str, Any]],
    count: int | None,
    description: str,
    colours: Mapping[str, str],
) -> str:
    colour = colours[code]
    shown = f"{len(rejects):,} of {count:,} shown" if count else f"{len(rejects):,} shown"
    figures = "".join(
        _figure(
            str(reject.get("source", "")),
            reject.get("thumbnail"),
            code,
            colour,
            f'<div class="msg">{_e(reject.get("message", ""))}</div>',
        )
        for reject in rejects
    )
    return (
        f'<div class="group" data-reason="{_e(code)}" style="border-color:{colour}">'
        f'<h3>{_chip(code, colour)}<span class="desc">{_e(description)}</span>'
        f'<span class="desc">· {shown}</span></h3>'
        f'<div class="thumbs">{figures}</div></div>'
    )


def _bar_chart(rows: Sequence[tuple[str, int]], colour: str, label: str) -> str:
    """Horizontal bars, one per ``(name, count)`` row, with the name left and the count right."""
    longest_name = max(len(name) for name, _ in rows)
    label_width = min(230, 16 + 7 * min(longest_name, 30))
    width, row_height, count_width = 680, 26, 64
    bar_space = width - label_width - count_width
    height = row_height * len(rows) + 8
    most = max(count for _, count in rows) or 1
    bars = []
    for index, (name, count) in enumerate(rows):
        y = 4 + index * row_height
        shown = name if len(name) <= 30 else name[:29] + "…"
        length = max(count / most * bar_space, 1.0 if count else 0.0)
        bars.append(
            f"<g><title>{_e(name)}: {count:,}</title>"
            f'<text x="{label_width - 8}" y="{y + 17}" text-anchor="end" font-size="12.5" '
            f'fill="#323f4b">{_e(shown)}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{length:.1f}" height="{row_height - 8}" '
            f'rx="3" fill="{colour}"/>'
            f'<text x="{label_width + length + 6:.1f}" y="{y + 17}" font-size="12" '
            f'fill="#52606d">{count:,}</text></g>'
        )
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" style="max-width:{width}px" '
        f'role="img" aria-label="{_e(label)}">{"".join(bars)}</svg>'
    )


def _issues_section(issues: Mapping[str, int], flagged: Sequence[Mapping[str, Any]]) -> str:
    if not issues:
        return _section("issues", "Quality issues", "", _empty("No quality issues found"))
    rows = sorted(issues.items(), key=lambda item: (-item[1], item[0]))
    lead = (
        "Valid images flagged by quality checks; an image can have several issues. "
        "<code>validation.drop_issues</code> rejects the issues it names."
    )
    chart = _bar_chart(rows, ISSUE_COLOUR, "Quality issue counts")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for image in flagged:
        groups.setdefault(str(image.get("issue", "")), []).append(image)
    colours = dict.fromkeys(groups, ISSUE_COLOUR)
    samples = "".join(
        _reject_group(issue, groups[issue], issues.get(issue), "", colours)
        for issue, _ in rows
        if issue in groups
    )
    return _section("issues", "Quality issues", lead, chart + samples)


def _duplicates_section(clusters: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any]) -> str:
    if not clusters:
        return _section("duplicates", "Duplicates", "", _empty("No duplicate clusters"))
    lead = (
        f"{len(clusters):,} clusters · {_count(metrics.get('duplicates_found', 0))} duplicates "
        f"found · {_count(metrics.get('duplicates_removed', 0))} removed. The kept image of each "
        "cluster is outlined; distance is the perceptual-hash distance to it."
    )
    return _section("duplicates", "Duplicates", lead, "".join(map(_cluster, clusters)))


def _cluster(cluster: Mapping[str, Any]) -> str:
    kind = "exact" if cluster.get("kind") == "exact" else "near"
    members: Sequence[Mapping[str, Any]] = cluster.get("members") or []
    figures = []
    for member in members:
        kept = bool(member.get("kept"))
        size = (
            f" · {_e(member['width'])}&times;{_e(member['height'])}"
            if member.get("width") and member.get("height")
            else ""
        )
        status = (
            '<span class="badge kept">kept</span>'
            if kept
            else '<span class="badge removed">removed</span>'
        )
        caption = (
            f'<div class="status">{status}</div>'
            f'<div class="msg">distance {_count(member.get("distance", 0))}{size}</div>'
            f"{_evidence(member.get('evidence'))}"
        )
        figures.append(
            _figure(
                str(member.get("source", "")),
                member.get("thumbnail"),
                "no thumbnail",
                "#9aa5b1",
                caption,
                "is-kept" if kept else "",
            )
        )
    return (
        f'<div class="cluster" data-cluster="{_e(cluster.get("cluster", ""))}">'
        f'<div class="head"><span class="badge {kind}">{kind}</span>'
        f"<code>{_e(cluster.get('cluster', ''))}</code>"
        f"<span>{len(members):,} images</span></div>"
        f'<div class="thumbs">{"".join(figures)}</div></div>'
    )


_EXACT_METHODS = {"same file": "same file bytes", "same pixels": "same decoded pixels"}


def _evidence(evidence: Mapping[str, Any] | None) -> str:
    """What matched a removed copy to its cluster: the method, its figures, and whether this
    copy is the rotated or cropped side, which is why the other was kept."""
    if not evidence:
        return ""
    method = str(evidence.get("method", ""))
    if method in ("orb-ransac", "ecc-aligned"):
        how = (
            f"{_count(evidence.get('inliers', 0))} keypoints agree"
            if method == "orb-ransac"
            else "aligned by intensity"
        )
        # Rounded first, then + 0.0: a rotation of -0.02 degrees reads 0.0, not -0.0.
        parts = [
            how,
            f"correlation {float(evidence.get('correlation') or 0):.2f}",
            f"rotation {round(float(evidence.get('rotation') or 0), 1) + 0.0:.1f}&deg;",
            f"scale {float(evidence.get('scale') or 1):.2f}",
        ]
        if evidence.get("flipped"):
            parts.append("flipped")
        if evidence.get("edited") is True:
            parts.append("this copy is the rotated or cropped one")
        detail = ", ".join(parts)
    elif method == "phash":
        detail = f"hash distance {_count(evidence.get('distance', 0))}"
    else:
        detail = _EXACT_METHODS.get(method) or _e(method)
    if evidence.get("matched") is not None:
        detail += " (matched through another copy in the cluster)"
    return f'<div class="msg evidence">{detail}</div>'


def _histogram_svg(hist: Mapping[str, Sequence[float]], axis_title: str) -> str:
    """Vertical bars over the bin edges, with count ticks on the left and edge ticks below."""
    edges, counts = hist["edges"], hist["counts"]
    width, height = 500, 230
    left, right, top, bottom = 50, 26, 12, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    most = max(counts) or 1
    bin_w = plot_w / len(counts)
    parts = []
    for index, count in enumerate(counts):
        bar_h = count / most * plot_h
        parts.append(
            f'<rect x="{left + index * bin_w + 0.5:.1f}" y="{top + plot_h - bar_h:.1f}" '
            f'width="{max(bin_w - 1, 0.5):.1f}" height="{bar_h:.1f}" fill="{ACCENT}">'
            f"<title>{_number(edges[index])}&ndash;{_number(edges[index + 1])}: {count:,}</title>"
            "</rect>"
        )
    axis_y = top + plot_h
    parts.append(
        f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#9aa5b1"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" stroke="#9aa5b1"/>'
    )
    for tick in sorted({0, most // 2, most}):
        y = axis_y - tick / most * plot_h
        parts.append(
            f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="#9aa5b1"/>'
            f'<text x="{left - 7}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#52606d">{tick:,}</text>'
        )
    for index in sorted({0, len(counts) // 2, len(counts)}):
        x = left + index * bin_w
        parts.append(
            f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 4}" stroke="#9aa5b1"/>'
            f'<text x="{x:.1f}" y="{axis_y + 17}" text-anchor="middle" font-size="11" '
            f'fill="#52606d">{_number(edges[index])}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle" '
        f'font-size="12" fill="#323f4b">{_e(axis_title)}</text>'
        f'<text x="13" y="{top + plot_h / 2:.1f}" text-anchor="middle" font-size="12" '
        f'fill="#323f4b" transform="rotate(-90 13 {top + plot_h / 2:.1f})">images</text>'
    )
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{_e(axis_title)} histogram">{"".join(parts)}</svg>'
    )


def _histograms_section(histograms: Mapping[str, Mapping[str, Sequence[float]]]) -> str:
    names = list(HISTOGRAM_AXES) + [name for name in histograms if name not in HISTOGRAM_AXES]
    charts = []
    for name in names:
        title, axis = HISTOGRAM_AXES.get(name, (name, name))
        hist = histograms.get(name) or {}
        has_data = (
            bool(hist.get("counts")) and len(hist.get("edges", [])) == len(hist["counts"]) + 1
        )
        content = _histogram_svg(hist, axis) if has_data else _empty("No data")
        charts.append(
            f'<div class="chart" data-histogram="{_e(name)}"><h3>{_e(title)}</h3>{content}</div>'
        )
    lead = "Distributions over the valid images."
    return _section(
        "histograms", "Histograms", lead, f'<div class="charts">{"".join(charts)}</div>'
    )


def _labels_section(labels: Mapping[str, int], imbalance: float | None) -> str:
    if not labels:
        return _section("labels", "Labels", "", _empty("No labels"))
    rows = sorted(labels.items(), key=lambda item: (-item[1], item[0]))
    ratio = "—" if imbalance is None else f"{imbalance:.2f}"
    lead = (
        f"{len(rows):,} classes · {sum(labels.values()):,} labelled images · "
        f"imbalance ratio (largest ÷ smallest class) <strong>{ratio}</strong>"
    )
    chart = _bar_chart(rows, REASON_COLOURS[5], "Class counts")
    return _section("labels", "Labels", lead, chart)


def _operations_section(operations: Sequence[Any], fingerprint: str) -> str:
    if not operations:
        body = _empty("No operations recorded")
    else:
        items = "".join(
            f"<li><code>{_e(json.dumps(operation, sort_keys=True, default=str))}</code></li>"
            for operation in operations
        )
        body = f'<ol class="ops">{items}</ol>'
    lead = f"Fingerprint <code>{_e(fingerprint)}</code>" if fingerprint else ""
    return _section("operations", "Operations", lead, body)
