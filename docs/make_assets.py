#!/usr/bin/env python3
"""Draws the report's plots from the JSON summary of `kiln quickstart --json`.

Standard library only; the SVG is written by hand so the files are small, self-contained
and diff-able. Usage:

    python3 docs/make_assets.py [docs/quickstart-run.json] [docs/img]

Writes:
    rmse-by-month.svg        2012's RMSE per month: the frozen 2011 model vs what was served
    retrains-by-month.svg    retrainings per month of event time: promoted, rejected, failed
    production-version.svg   the version `production` pointed at over 2012 (event time)
"""

import datetime as dt
import json
import math
import sys
from pathlib import Path
from xml.sax.saxutils import escape

FONT = "font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif"
INK = "#1d232b"
MUTED = "#5f6b78"
GRID = "#e3e6ea"
FROZEN = "#9aa4ae"
AUTOMATED = "#1a73e8"
PROMOTED = "#1e8e3e"
REJECTED = "#e8710a"
FAILED = "#c5221f"
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class Svg:
    def __init__(self, width, height, title):
        self.width, self.height = width, height
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        ]

    def add(self, s):
        self.parts.append(s)

    def text(self, x, y, s, size=12, anchor="start", color=INK, weight="normal", rotate=None):
        transform = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
        self.add(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{color}" font-weight="{weight}" style="{FONT}"{transform}>{escape(str(s))}</text>'
        )

    def line(self, x1, y1, x2, y2, color=GRID, width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{color}" stroke-width="{width}"{d}/>'
        )

    def rect(self, x, y, w, h, color, tip=None):
        t = f"<title>{escape(tip)}</title>" if tip else ""
        self.add(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
            f'fill="{color}">{t}</rect>'
        )

    def legend(self, x, y, items):
        for color, label in items:
            self.rect(x, y - 10, 12, 12, color)
            self.text(x + 17, y, label, size=12)
            x += 24 + 7 * len(label)

    def save(self, path):
        self.add("</svg>")
        Path(path).write_text("\n".join(self.parts) + "\n", encoding="utf-8")


def nice_step(span, ticks=5):
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def y_axis(svg, left, top, bottom, right, hi, label, step=None):
    """Horizontal grid lines and tick labels from 0 to hi; returns the y mapping."""
    step = step or nice_step(hi)
    top_value = math.ceil(hi / step) * step
    y = lambda v: bottom - (bottom - top) * v / top_value
    v = 0
    while v <= top_value + 1e-9:
        svg.line(left, y(v), right, y(v), GRID)
        svg.text(left - 8, y(v) + 4, f"{v:g}", size=11, anchor="end", color=MUTED)
        v += step
    svg.text(left - 46, (top + bottom) / 2, label, size=12, anchor="middle", color=MUTED, rotate=-90)
    svg.line(left, bottom, right, bottom, INK)
    return y


def rmse_by_month(run, path):
    months = run["months"]
    W, H = 820, 420
    left, right, top, bottom = 80, W - 24, 78, H - 62
    svg = Svg(W, H, "RMSE per month of 2012: frozen 2011 model vs with automation")
    svg.text(left, 28, "2012, month by month: RMSE of what was served (hourly rentals)", size=16, weight="bold")
    svg.text(
        left,
        48,
        f"whole year: {run['rmse_automated']:.1f} with automation vs {run['rmse_frozen']:.1f} "
        f"for the frozen 2011 model (ratio {run['rmse_ratio_vs_frozen']:.2f}); "
        f"{run['labelled_rows']:,} labelled hours",
        size=12,
        color=MUTED,
    )
    hi = max(max(m["rmse_frozen"], m["rmse_automated"]) for m in months)
    y = y_axis(svg, left, top, bottom, right, hi * 1.08, "RMSE (rentals per hour)")
    slot = (right - left) / len(months)
    bw = slot * 0.34
    for i, m in enumerate(months):
        x0 = left + slot * i + slot / 2
        f, a = m["rmse_frozen"], m["rmse_automated"]
        svg.rect(x0 - bw - 1, y(f), bw, bottom - y(f), FROZEN, f"{m['month']}: frozen 2011 model {f:.1f}")
        svg.rect(x0 + 1, y(a), bw, bottom - y(a), AUTOMATED, f"{m['month']}: with automation {a:.1f}")
        svg.text(x0 - bw / 2, y(f) - 4, f"{f:.0f}", size=10, anchor="middle", color=MUTED)
        svg.text(x0 + 1 + bw / 2, y(a) - 4, f"{a:.0f}", size=10, anchor="middle", color=AUTOMATED)
        label = MONTHS[int(m["month"][5:7]) - 1]
        svg.text(x0, bottom + 16, label, size=11, anchor="middle")
        svg.text(x0, bottom + 30, f"×{a / f:.2f}", size=10, anchor="middle", color=MUTED)
    svg.text(left - 8, bottom + 30, "ratio", size=10, anchor="end", color=MUTED)
    svg.legend(left, H - 12, [(FROZEN, "frozen 2011 model (bikes@1)"), (AUTOMATED, "with automation (what production served)")])
    svg.save(path)


def retrains_by_month(run, path):
    counts = {f"2012-{k:02d}": {"promoted": 0, "rejected": 0, "failed": 0} for k in range(1, 13)}
    for r in run["retrainings"]:
        month = r["at"][:7]
        state = r["state"] if r["state"] in ("promoted", "rejected") else "failed"
        if month in counts:
            counts[month][state] += 1
    W, H = 820, 400
    left, right, top, bottom = 80, W - 24, 78, H - 56
    total = {s: sum(c[s] for c in counts.values()) for s in ("promoted", "rejected", "failed")}
    svg = Svg(W, H, "Retrainings per month of 2012 by outcome")
    svg.text(left, 28, "The retrain controller in 2012: retrainings per month (event time)", size=16, weight="bold")
    triggers = {}
    for r in run["retrainings"]:
        t = r["trigger"].split(":")[0]
        triggers[t] = triggers.get(t, 0) + 1
    svg.text(
        left,
        48,
        f"{len(run['retrainings'])} retrainings ({', '.join(f'{n} by {t}' for t, n in sorted(triggers.items()))}): "
        f"{total['promoted']} promoted, {total['rejected']} rejected by a gate, {total['failed']} failed",
        size=12,
        color=MUTED,
    )
    hi = max(sum(c.values()) for c in counts.values())
    y = y_axis(svg, left, top, bottom, right, hi * 1.1, "retrainings", step=2)
    slot = (right - left) / 12
    bw = slot * 0.6
    for i, (month, c) in enumerate(counts.items()):
        x = left + slot * i + (slot - bw) / 2
        base = 0
        for state, color in (("promoted", PROMOTED), ("rejected", REJECTED), ("failed", FAILED)):
            n = c[state]
            if n:
                svg.rect(x, y(base + n), bw, y(base) - y(base + n), color, f"{month}: {n} {state}")
                if n >= 2:
                    svg.text(x + bw / 2, y(base + n / 2) + 4, n, size=10, anchor="middle", color="#ffffff")
            base += n
        svg.text(x + bw / 2, y(base) - 4, base, size=10, anchor="middle", color=MUTED)
        svg.text(x + bw / 2, bottom + 16, MONTHS[i], size=11, anchor="middle")
    svg.legend(left, H - 12, [(PROMOTED, "promoted to production"), (REJECTED, "rejected by a gate"), (FAILED, "failed (data rules)")])
    svg.save(path)


def production_version(run, path):
    """The version production pointed at, stepping at each promotion (event time)."""
    day = lambda s: (dt.date.fromisoformat(s[:10]) - dt.date(2012, 1, 1)).days
    steps = [(0, 1)]
    rejected, failed = [], []
    for r in run["retrainings"]:
        if r["state"] == "promoted" and r["candidate"] is not None:
            steps.append((day(r["at"]), r["candidate"]))
        elif r["state"] == "rejected":
            rejected.append(day(r["at"]))
        else:
            failed.append(day(r["at"]))
    end_day = 366
    W, H = 820, 400
    left, right, top, bottom = 80, W - 24, 70, H - 56
    svg = Svg(W, H, "The production version over 2012")
    svg.text(left, 28, "Which version served production during 2012 (event time)", size=16, weight="bold")
    svg.text(
        left,
        48,
        f"from bikes@1 (trained on 2011) to {run.get('production') or '?'}: "
        f"{len(steps) - 1} promotions; marks on the time axis: rejected and failed retrainings",
        size=12,
        color=MUTED,
    )
    hi = max(v for _, v in steps)
    y = y_axis(svg, left, top, bottom, right, hi * 1.05, "production version (bikes@N)", step=25)
    x = lambda d: left + (right - left) * d / end_day
    for k in range(12):
        d = (dt.date(2012, k + 1, 1) - dt.date(2012, 1, 1)).days
        svg.line(x(d), bottom, x(d), bottom + 4, INK)
        svg.text(x(d + 15), bottom + 18, MONTHS[k], size=11, anchor="middle")
    pts = []
    for i, (d, v) in enumerate(steps):
        nxt = steps[i + 1][0] if i + 1 < len(steps) else end_day
        pts.append(f"{x(d):.1f},{y(v):.1f}")
        pts.append(f"{x(nxt):.1f},{y(v):.1f}")
    svg.add(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{AUTOMATED}" stroke-width="2"/>')
    for d in rejected:
        svg.add(f'<path d="M{x(d):.1f} {bottom - 2:.1f} l-4 -8 h8 z" fill="{REJECTED}"><title>rejected</title></path>')
    for d in failed:
        svg.add(f'<circle cx="{x(d):.1f}" cy="{bottom - 6:.1f}" r="4" fill="{FAILED}"><title>failed</title></circle>')
    svg.add(f'<line x1="{left}" y1="{H - 16}" x2="{left + 14}" y2="{H - 16}" stroke="{AUTOMATED}" stroke-width="2"/>')
    svg.text(left + 19, H - 12, "production version", size=12)
    svg.add(f'<path d="M{left + 168} {H - 10} l-5 -10 h10 z" fill="{REJECTED}"/>')
    svg.text(left + 178, H - 12, "candidate rejected by a gate", size=12)
    svg.add(f'<circle cx="{left + 380}" cy="{H - 15}" r="5" fill="{FAILED}"/>')
    svg.text(left + 390, H - 12, "retraining failed (harvest refused by the data rules)", size=12)
    svg.save(path)


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("quickstart-run.json"))
    out = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).with_name("img"))
    out.mkdir(parents=True, exist_ok=True)
    run = json.loads(src.read_text(encoding="utf-8"))
    if "months" not in run:
        sys.exit(f"{src}: no replay in this summary (was it made with --no-replay?)")
    rmse_by_month(run, out / "rmse-by-month.svg")
    retrains_by_month(run, out / "retrains-by-month.svg")
    production_version(run, out / "production-version.svg")
    for name in ("rmse-by-month.svg", "retrains-by-month.svg", "production-version.svg"):
        print(f"wrote {out / name} ({(out / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
