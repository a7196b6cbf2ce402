#!/usr/bin/env python3
"""Draw the panels of regcred's Grafana dashboard as one SVG, from a real
Prometheus: each panel's queries (charts/regcred/dashboards/regcred.json) are
run over a time range with /api/v1/query_range and drawn as line charts, the
way Grafana draws its time series panels (Grafana itself does not run here).

    hack/dashboard-picture.py --prometheus http://127.0.0.1:9090 \
        --start 1764000000 --end 1764000900 --out docs/dashboard.svg

tests/alerts.rs (`record_a_run_for_the_dashboard_picture`, run by hand with
`--ignored`) runs the operator on a real node under a real Prometheus and
calls this script at the end, saving the query results beside the build
(target/dashboard-run.json) so that the picture can be drawn again from them
(`--load`) without another run. Python standard library only.
"""

import argparse
import json
import math
import urllib.parse
import urllib.request
from html import escape

COLUMNS = 2
PANEL_W, PANEL_H = 560, 270
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP = 64, 16, 40
LEGEND_LINE = 14
MAX_LEGEND = 8
PALETTE = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0", "#508642", "#cca300"]


def query_range(base, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"query failed: {expr}: {body}")
    return body["data"]["result"]


def legend(fmt, labels):
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    while "{{" in out:
        a = out.index("{{")
        b = out.index("}}", a)
        out = out[:a] + out[b + 2 :]
    return " ".join(out.split()) or "value"


def fmt_value(v, unit):
    if unit == "s":
        a = abs(v)
        if a >= 3600:
            return f"{v / 3600:.1f}h"
        if a >= 60:
            return f"{v / 60:.0f}m"
        if a >= 1 or a == 0:
            return f"{v:.0f}s"
        return f"{v * 1000:.0f}ms"
    if abs(v) >= 1000:
        return f"{v / 1000:.1f}k"
    if v == int(v):
        return f"{v:.0f}"
    return f"{v:.2g}"


def nice_ticks(lo, hi, n=4):
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    first = math.floor(lo / step) * step
    ticks = [first]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(ticks[-1] + step)
    return ticks


def panel_svg(panel, series, start, end, x0, y0):
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    shown = series[:MAX_LEGEND]
    legend_h = LEGEND_LINE * (len(shown) + (1 if len(series) > MAX_LEGEND else 0)) + 6
    plot_w = PANEL_W - PLOT_LEFT - PLOT_RIGHT
    plot_h = PANEL_H - PLOT_TOP - 28 - legend_h
    out = [
        f'<g transform="translate({x0},{y0})">',
        f'<rect width="{PANEL_W - 8}" height="{PANEL_H - 8}" rx="3" fill="#181b1f" stroke="#2c3235"/>',
        f'<text x="10" y="22" class="title">{escape(panel["title"])}</text>',
    ]
    values = [v for _, pts in series for _, v in pts]
    if not values:
        out.append(f'<text x="{PANEL_W / 2}" y="{PANEL_H / 2}" class="nodata" text-anchor="middle">No data</text></g>')
        return "\n".join(out)
    lo, hi = min(values + [0]), max(values)
    thresholds = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    marks = [s["value"] for s in thresholds if s.get("value") is not None]
    hi = max([hi] + [m * 1.1 for m in marks])
    if unit == "s" and hi - lo >= 240:
        ticks = [t * 60 for t in nice_ticks(lo / 60, hi / 60)]  # whole minutes
    else:
        ticks = nice_ticks(lo, hi)
    lo, hi = ticks[0], ticks[-1]

    def sx(t):
        return PLOT_LEFT + (t - start) / (end - start) * plot_w

    def sy(v):
        return PLOT_TOP + plot_h - (v - lo) / ((hi - lo) or 1) * plot_h

    for t in ticks:
        y = sy(t)
        out.append(f'<line x1="{PLOT_LEFT}" x2="{PLOT_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{PLOT_LEFT - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{fmt_value(t, unit)}</text>')
    minutes = (end - start) / 60
    every = max(1, round(minutes / 6))
    m = 0
    while m <= minutes:
        x = sx(start + m * 60)
        out.append(f'<text x="{x:.1f}" y="{PLOT_TOP + plot_h + 14}" class="axis" text-anchor="middle">{m}m</text>')
        m += every
    for mark in marks:
        y = sy(mark)
        out.append(f'<line x1="{PLOT_LEFT}" x2="{PLOT_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="threshold"/>')
    for i, (name, pts) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        path, gap = [], True
        prev_t = None
        for t, v in pts:
            if prev_t is not None and t - prev_t > 3 * STEP:
                gap = True
            path.append(f'{"M" if gap else "L"}{sx(t):.1f},{sy(v):.1f}')
            gap, prev_t = False, t
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="1.5"/>')
    ly = PLOT_TOP + plot_h + 30
    for i, (name, pts) in enumerate(shown):
        color = PALETTE[i % len(PALETTE)]
        last = fmt_value(pts[-1][1], unit)
        out.append(f'<rect x="{PLOT_LEFT}" y="{ly - 8}" width="10" height="3" fill="{color}"/>')
        out.append(f'<text x="{PLOT_LEFT + 16}" y="{ly}" class="legend">{escape(name)}</text>')
        out.append(f'<text x="{PANEL_W - 20}" y="{ly}" class="legend" text-anchor="end">{last}</text>')
        ly += LEGEND_LINE
    if len(series) > MAX_LEGEND:
        out.append(f'<text x="{PLOT_LEFT + 16}" y="{ly}" class="legend">… and {len(series) - MAX_LEGEND} more</text>')
    out.append("</g>")
    return "\n".join(out)


STEP = 5


def panel_series(a, panel):
    """A panel's series over the range, from Prometheus: (legend, [(t, v)])."""
    series = []
    for target in panel["targets"]:
        expr = target["expr"].replace("$__rate_interval", a.rate_interval)
        for r in query_range(a.prometheus, expr, a.start, a.end, a.step):
            pts = [(float(t), float(v)) for t, v in r["values"] if not math.isnan(float(v))]
            if pts:
                series.append((legend(target.get("legendFormat", ""), r["metric"]), pts))
    return sorted(series, key=lambda s: s[0])


def main():
    global STEP
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prometheus", help="base URL, e.g. http://127.0.0.1:9090")
    p.add_argument("--start", type=float, help="unix seconds")
    p.add_argument("--end", type=float, help="unix seconds")
    p.add_argument("--step", type=int, default=5, help="seconds between points")
    p.add_argument("--rate-interval", default="1m", help="what $__rate_interval stands for")
    p.add_argument("--dashboard", default="charts/regcred/dashboards/regcred.json")
    p.add_argument("--caption", default="", help="a line under the title saying what run this is")
    p.add_argument("--out", default="docs/dashboard.svg")
    p.add_argument("--save", help="also write the query results to this JSON file")
    p.add_argument("--load", help="draw from a file --save wrote instead of asking Prometheus")
    a = p.parse_args()
    STEP = a.step
    dashboard = json.load(open(a.dashboard))
    saved = json.load(open(a.load)) if a.load else {}
    if saved:
        a.start, a.end, a.caption = saved["start"], saved["end"], a.caption or saved["caption"]
    elif None in (a.prometheus, a.start, a.end):
        p.error("--prometheus, --start and --end are needed without --load")
    panels = sorted(
        (q for q in dashboard["panels"] if q.get("targets")),
        key=lambda q: (q["gridPos"]["y"], q["gridPos"]["x"]),
    )
    header = 56
    rows = math.ceil(len(panels) / COLUMNS)
    width, height = COLUMNS * PANEL_W + 8, header + rows * PANEL_H
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="Inter, Helvetica, Arial, sans-serif">',
        "<style>.title{fill:#d8d9da;font-size:13px;font-weight:600}.axis{fill:#8e8e8e;font-size:10px}"
        ".legend{fill:#ccccdc;font-size:10.5px}.grid{stroke:#2c3235;stroke-width:1}"
        ".threshold{stroke:#e24d42;stroke-width:1;stroke-dasharray:4 3}.nodata{fill:#8e8e8e;font-size:12px}"
        ".h1{fill:#d8d9da;font-size:16px;font-weight:600}.cap{fill:#8e8e8e;font-size:11px}</style>",
        f'<rect width="{width}" height="{height}" fill="#111217"/>',
        f'<text x="12" y="24" class="h1">{escape(dashboard["title"])} dashboard</text>',
        f'<text x="12" y="42" class="cap">{escape(a.caption)}</text>',
    ]
    record = {"start": a.start, "end": a.end, "caption": a.caption, "panels": {}}
    for i, panel in enumerate(panels):
        if saved:
            series = [(name, [tuple(p) for p in pts]) for name, pts in saved["panels"][panel["title"]]]
        else:
            series = panel_series(a, panel)
        record["panels"][panel["title"]] = series
        x0 = 4 + (i % COLUMNS) * PANEL_W
        y0 = header + (i // COLUMNS) * PANEL_H
        parts.append(panel_svg(panel, series, a.start, a.end, x0, y0))
    parts.append("</svg>")
    if a.save:
        with open(a.save, "w") as f:
            json.dump(record, f)
    with open(a.out, "w") as f:
        f.write("\n".join(parts) + "\n")
    print(f"wrote {a.out}: {len(panels)} panels, {a.end - a.start:.0f} s of data")


if __name__ == "__main__":
    main()
