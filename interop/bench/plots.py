"""SVG plots of oriole-bench RESULT lines, with no plotting library (plain SVG text).

    python3 plots.py RESULTS OUTDIR

Writes, when the results contain the data:
- latency-cdf-<scenario>.svg: the one-way latency CDF of each server in the chat scenarios
  (from the `cdf_ms` field: quantile:milliseconds pairs), latency on a log axis;
- memory-per-session.svg: server RSS per idle authenticated session against the number of
  sessions (the `idle` rows), sessions on a log axis.
Each file is a self-contained SVG that browsers and GitHub render.
"""
import math
import os
import sys
from collections import defaultdict

from report import ORDER, parse

COLOURS = {"oriole": "#d35400", "prosody": "#2c3e50", "ejabberd": "#27ae60", "relay": "#8e44ad"}
W, H = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 130, 40, 50


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def log_ticks(lo, hi):
    ticks = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in (1, 2, 5):
            t = m * 10 ** e
            if lo <= t <= hi:
                ticks.append(t)
        e += 1
    return ticks


def fmt(v):
    return f"{v:g}"


def nice_step(span):
    """A 1-2-5 step that cuts `span` into about five intervals."""
    raw = span / 5 or 1
    e = 10 ** math.floor(math.log10(raw))
    return next(m * e for m in (1, 2, 5, 10) if m * e >= raw)


def chart(title, xlabel, ylabel, series, xlog, ylim=None, refline=None):
    """series: {name: [(x, y), ...]}; refline: optional (y, label) drawn dashed; returns SVG text."""
    xs = [x for pts in series.values() for x, _ in pts if not xlog or x > 0]
    ys = [y for pts in series.values() for _, y in pts]
    if not xs:
        return None
    x0, x1 = min(xs), max(xs)
    if xlog:
        x0, x1 = 10 ** math.floor(math.log10(x0)), 10 ** math.ceil(math.log10(x1))
    elif x0 == x1:
        x1 = x0 + 1
    if ylim:
        y0, y1 = ylim
        ystep = (y1 - y0) / 5
    else:
        top = max(ys + ([refline[0]] if refline else []))
        ystep = nice_step(top * 1.05)
        y0, y1 = 0, ystep * math.ceil(top * 1.05 / ystep)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x):
        f = (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0)) if xlog else (x - x0) / (x1 - x0)
        return LEFT + f * pw

    def py(y):
        return TOP + ph - (y - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{esc(title)}</text>']
    xticks = log_ticks(x0, x1) if xlog else [x0 + i * (x1 - x0) / 5 for i in range(6)]
    for t in xticks:
        out.append(f'<line x1="{px(t):.1f}" y1="{TOP}" x2="{px(t):.1f}" y2="{TOP + ph}" stroke="#ddd"/>')
        out.append(f'<text x="{px(t):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{fmt(round(t, 3))}</text>')
    for i in range(round((y1 - y0) / ystep) + 1):
        t = y0 + i * ystep
        out.append(f'<line x1="{LEFT}" y1="{py(t):.1f}" x2="{LEFT + pw}" y2="{py(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{fmt(round(t, 2))}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 12}" text-anchor="middle">{esc(xlabel)}</text>')
    out.append(f'<text x="16" y="{TOP + ph / 2}" text-anchor="middle" transform="rotate(-90 16 {TOP + ph / 2})">{esc(ylabel)}</text>')
    if refline:
        out.append(f'<line x1="{LEFT}" y1="{py(refline[0]):.1f}" x2="{LEFT + pw}" y2="{py(refline[0]):.1f}" '
                   'stroke="#c0392b" stroke-dasharray="6 4"/>')
        out.append(f'<text x="{LEFT + 6}" y="{py(refline[0]) - 5:.1f}" fill="#c0392b">{esc(refline[1])}</text>')
    names = sorted(series, key=lambda s: ORDER.index(s) if s in ORDER else 99)
    for i, name in enumerate(names):
        pts = [(x, y) for x, y in sorted(series[name]) if not xlog or x > 0]
        colour = COLOURS.get(name, "#7f8c8d")
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}"/>')
        ly = TOP + 10 + 20 * i
        out.append(f'<line x1="{W - RIGHT + 12}" y1="{ly}" x2="{W - RIGHT + 32}" y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{W - RIGHT + 38}" y="{ly + 4}">{esc(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def cdf_series(rows, scenario):
    series = {}
    for r in rows:
        if r.get("scenario") != scenario or "cdf_ms" not in r:
            continue
        pts = []
        for pair in r["cdf_ms"].split(","):
            q, v = pair.split(":")
            # A latency that rounds to 0.00 ms is drawn at the axis' floor of 0.01 ms.
            pts.append((max(float(v), 0.01), float(q)))
        series[r["server"]] = pts  # the last repeat of each server
    return series


def memory_series(rows):
    series = defaultdict(list)
    for r in rows:
        if r.get("scenario") == "idle" and r.get("kib_per_session") not in (None, "-"):
            series[r["server"]].append((float(r["clients"]), float(r["kib_per_session"])))
    return dict(series)


def main():
    path, outdir = sys.argv[1], sys.argv[2]
    rows = parse(path)
    os.makedirs(outdir, exist_ok=True)
    written = []
    for scen in ("chat-closed", "chat-open"):
        svg = chart(f"One-way message latency, {scen}", "latency (ms, log scale)", "fraction of messages",
                    cdf_series(rows, scen), xlog=True, ylim=(0, 1))
        if svg:
            written.append(f"latency-cdf-{scen}.svg")
            with open(os.path.join(outdir, written[-1]), "w") as f:
                f.write(svg)
    svg = chart("Server memory per idle authenticated TLS session", "sessions (log scale)", "KiB per session",
                memory_series(rows), xlog=True, refline=(12, "target: 12 KiB"))
    if svg:
        written.append("memory-per-session.svg")
        with open(os.path.join(outdir, written[-1]), "w") as f:
            f.write(svg)
    for w in written:
        print(f"wrote {os.path.join(outdir, w)}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
