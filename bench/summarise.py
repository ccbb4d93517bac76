#!/usr/bin/env python3
"""Machine facts and the report for bench/load.sh.

    summarise.py meta --out meta.json [--oha PATH] [--param KEY=VALUE ...]
        Collect the machine facts (nproc, CPU model, kernel, tool versions, git revision) and the
        run parameters into meta.json, at the start of a run.

    summarise.py report --work DIR --out bench/results
        Read DIR/meta.json, DIR/startup.json and DIR/runs.jsonl (one line per wrk or oha run,
        written by load.sh; an oha run's line names its JSON output and, for a Tollgate row, its
        /metrics overhead buckets before and after the run, which are read into the record) and
        write raw.json (every run), latest.md (medians over rounds, ratios to nginx, the open-loop
        and every-core tables), latest.png (closed loop: throughput and p99 per peer) and
        latest-open.png (open loop: p99 and p99 added per rate) into --out.

    summarise.py report --raw bench/results/raw.json --out bench/results
        Re-render latest.md and the PNGs from an earlier raw.json.

    summarise.py oha-line --oha RUN.json [--metrics BEFORE AFTER]
        One progress line for load.sh: an oha run's achieved rate, percentiles and errors, and
        the p99 of Tollgate's overhead histogram over the run.

Needs matplotlib only for the PNGs (Debian: python3-matplotlib); without it the PNGs are skipped
with a warning and the rest is written.
"""

import argparse
import json
import math
import os
import re
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone

# Display order and colours; peers not listed here go last in the order they appear.
PEER_ORDER = ["direct", "nginx", "haproxy", "tollgate", "tollgate-default", "tollgate-shared",
              "tollgate-callers", "nginx-workers2", "tollgate-workers2"]
COLOURS = {
    "direct": "#9e9e9e",
    "nginx": "#2e7d32",
    "haproxy": "#1565c0",
    "tollgate": "#e65100",
    "tollgate-default": "#ffb74d",
    "tollgate-shared": "#8d6e63",
    "tollgate-callers": "#6a1b9a",
    "nginx-workers2": "#81c784",
    "tollgate-workers2": "#bf360c",
}
# The every-core pair: two workers each, not pinned.
EVERY_CORE = ("tollgate-workers2", "nginx-workers2")
# oha counts the requests its deadline cut short (in flight, or connections waiting for their
# next due time) as this error; they are the end of the run, not failures.
OHA_DEADLINE = "aborted due to deadline"
# An open-loop run that completed less than this share of its rate did not hold the rate: its
# latencies describe a lower load than the row says.
RATE_HELD = 0.95
NOT_PROXIES = {"direct"}  # rows with no proxy process: no RSS / CPU figures
# A run is "noisy" when processes outside the measurement (parallel builds...) used more than this
# many cores on average during it.
NOISE_CORES = 0.10


# --------------------------------------------------------------------------------------- meta
def first_line(cmd: list[str]) -> str:
    """First non-empty output line of a version command (stdout or stderr), or 'unavailable'."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    for line in (p.stdout + "\n" + p.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "unavailable"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cmd_meta(args) -> int:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rev = first_line(["git", "-C", repo, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    meta = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "nproc_online": first_line(["nproc"]),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "nginx": first_line(["nginx", "-v"]).removeprefix("nginx version: "),
        "haproxy": first_line(["haproxy", "-v"]).split(" - ")[0].replace("HAProxy version", "HAProxy"),
        "wrk": first_line(["wrk", "-v"]).split(" Copyright")[0],
        "oha": first_line([args.oha, "--version"]) if args.oha else None,
        "rustc": first_line(["rustc", "-V"]),
        "git": rev + (" (dirty work tree)" if dirty else ""),
        "params": dict(p.split("=", 1) for p in args.param),
    }
    with open(args.out, "w") as f:
        json.dump(meta, f, indent=1)
    return 0


# ------------------------------------------------------------------------------------- report
def is_open(run: dict) -> bool:
    return run.get("kind") == "open"


def common_figures(run: dict, requests: int, secs: float) -> None:
    """CPU per request, other work on the machine and peak RSS: the same for wrk and oha runs."""
    if run["peer"] not in NOT_PROXIES and run.get("cpu_ticks") is not None and requests:
        run["cpu_s_per_100k"] = run["cpu_ticks"] / run["clk_tck"] / requests * 1e5
    if run.get("other_cpu_ticks") is not None and secs > 0:
        run["other_cores"] = max(run["other_cpu_ticks"], 0) / run["clk_tck"] / secs
    if run.get("rss_hwm_kib") is not None and run["peer"] not in NOT_PROXIES:
        run["rss_mib"] = run["rss_hwm_kib"] / 1024


def tool_result(run: dict, tool: str):
    """The load generator's parsed output and the problems found so far; without an output the
    run is marked failed (and the caller returns it as it is)."""
    problems = []
    if not run.get("alive", True):
        problems.append("process died")
    result = run.get(tool)
    if result is None:
        problems.append(f"no {tool} result (exit {run.get(tool + '_exit')})")
        run.update(ok=False, problems=problems)
    return result, problems


def derive(run: dict) -> dict:
    """Add the derived figures and the sanity verdict to one raw run record."""
    if is_open(run):
        return derive_open(run)
    w, problems = tool_result(run, "wrk")
    if w is None:
        return run
    e = w["errors"]
    secs = w["duration_us"] / 1e6
    run["rps"] = w["requests"] / secs if secs > 0 else 0.0
    lat = w["latency_us"]
    run["p50_ms"], run["p99_ms"], run["p99_9_ms"] = (lat[k] / 1000 for k in ("p50", "p99", "p99_9"))
    run["non_2xx"] = e["status"]
    run["socket_errors"] = e["connect"] + e["read"] + e["write"] + e["timeout"]
    if e["status"]:
        problems.append(f"{e['status']} non-2xx")
    if run["socket_errors"]:
        problems.append("socket errors " + ", ".join(
            f"{k} {e[k]}" for k in ("connect", "read", "write", "timeout") if e[k]))
    if w["requests"] == 0:
        problems.append("no requests completed")
    common_figures(run, w["requests"], secs)
    run["ok"] = not problems
    run["problems"] = problems
    return run


# --------------------------------------------------------------------------- open loop (oha)
def oha_digest(doc: dict) -> dict:
    """The part of oha's JSON summary the report uses (latencies in seconds)."""
    summary = doc.get("summary") or {}
    pct = doc.get("latencyPercentiles") or {}
    return {
        "total_s": summary.get("total"),
        "slowest_s": summary.get("slowest"),
        "latency_s": {k: pct.get(k) for k in ("p50", "p90", "p99", "p99.9", "p99.99")},
        "status": doc.get("statusCodeDistribution") or {},
        "errors": doc.get("errorDistribution") or {},
    }


def read_oha(path: str) -> dict | None:
    try:
        with open(path) as f:
            return oha_digest(json.load(f))
    except (OSError, ValueError):
        return None


BUCKET_LINE = re.compile(r'^tollgate_overhead_seconds_bucket\{(?P<labels>[^}]*)\}\s+(?P<count>\S+)')
LE_LABEL = re.compile(r'le="(?P<le>[^"]+)"')


def read_buckets(path: str) -> dict | None:
    """{le: cumulative count} of every tollgate_overhead_seconds series in a /metrics scrape,
    added up over the series (upstream and environment labels); None when the file is missing
    or holds no bucket."""
    buckets: dict = {}
    try:
        with open(path) as f:
            for line in f:
                m = BUCKET_LINE.match(line)
                le = m and LE_LABEL.search(m["labels"])
                if le:
                    buckets[le["le"]] = buckets.get(le["le"], 0.0) + float(m["count"])
    except OSError:
        return None
    return buckets or None


def bound(le: str) -> float:
    return math.inf if le == "+Inf" else float(le)


def bucket_quantile(before: dict, after: dict, q: float):
    """The q-quantile of the observations made between two scrapes of one cumulative histogram,
    as Prometheus' histogram_quantile does it: find the bucket holding rank q * count and
    interpolate linearly between its bounds (the first bucket starts at 0). Returns (seconds,
    count, above): above is True when the rank falls in the +Inf bucket (the value is then the
    last finite bound, a lower limit). (None, count, False) when nothing was observed."""
    cum = [(bound(le), after[le] - before.get(le, 0.0)) for le in sorted(after, key=bound)]
    total = cum[-1][1] if cum else 0  # the last bucket, +Inf, counts every observation
    if total <= 0:
        return None, 0, False
    rank = q * total
    lo, below = 0.0, 0.0
    for hi, count in cum:
        if count >= rank:
            if math.isinf(hi):
                return lo, total, True
            if count <= below:
                return hi, total, False
            return lo + (hi - lo) * (rank - below) / (count - below), total, False
        lo, below = hi, count
    return lo, total, True


def derive_open(run: dict) -> dict:
    """The derived figures and sanity verdict of one oha run (fixed rate, latency corrected)."""
    o, problems = tool_result(run, "oha")
    if o is None:
        return run
    status = {str(k): v for k, v in o["status"].items()}
    ok = sum(v for k, v in status.items() if k.startswith("2"))
    non_2xx = sum(v for k, v in status.items() if not k.startswith("2"))
    errors = {k: v for k, v in o["errors"].items() if k != OHA_DEADLINE}
    run["aborted_at_deadline"] = o["errors"].get(OHA_DEADLINE, 0)
    secs = o.get("total_s") or 0.0
    run["achieved_rps"] = ok / secs if secs > 0 else 0.0
    lat = o["latency_s"]
    for key, field in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p99_9_ms")):
        v = lat.get(key)
        run[field] = v * 1000 if isinstance(v, (int, float)) and not math.isnan(v) else None
    run["non_2xx"] = non_2xx
    run["errors"] = sum(errors.values())
    if non_2xx:
        problems.append(f"{non_2xx} non-2xx")
    if errors:
        problems.append("errors " + ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())))
    if ok == 0:
        problems.append("no requests completed")
    elif run["achieved_rps"] < RATE_HELD * run["rate"]:
        problems.append(f"rate not held: {run['achieved_rps']:,.0f} of {run['rate']:,} req/s")
    buckets = run.get("overhead_buckets")
    if buckets:
        if buckets.get("after"):
            p99, count, above = bucket_quantile(buckets.get("before") or {}, buckets["after"], 0.99)
            run["overhead_count"] = count
            run["overhead_p99_ms"] = None if p99 is None else p99 * 1000
            run["overhead_p99_above"] = above
        else:
            problems.append("no tollgate_overhead_seconds buckets in /metrics")
    common_figures(run, ok, secs)
    run["ok"] = not problems
    run["problems"] = problems
    return run


def resolve_files(run: dict) -> dict:
    """Read the files an oha run's line names (in load.sh's work directory) into the record, so
    raw.json holds everything the report needs."""
    if not is_open(run):
        return run
    path = run.pop("oha_file", None)
    if path is not None:
        run["oha"] = read_oha(path)
    files = run.pop("metrics_files", None)
    if files:
        run["overhead_buckets"] = {"before": read_buckets(files[0]), "after": read_buckets(files[1])}
    return run


def cmd_oha_line(args) -> int:
    o = read_oha(args.oha)
    if o is None:
        print(f"NO RESULT (no oha JSON in {args.oha})")
        return 1
    run = {"kind": "open", "peer": "-", "rate": 0, "oha": o}
    if args.metrics:
        run["overhead_buckets"] = {"before": read_buckets(args.metrics[0]),
                                   "after": read_buckets(args.metrics[1])}
    derive_open(run)
    over = ""
    if run.get("overhead_p99_ms") is not None:
        over = f"  overhead p99 {'>' if run['overhead_p99_above'] else ''}{run['overhead_p99_ms']:.3f} ms"
    errs = f"  ERRORS {'; '.join(run['problems'])}" if run["problems"] else ""
    print(f"{run['achieved_rps']:9,.0f} req/s  p50 {fmt(run['p50_ms'], 2)}  p99 {fmt(run['p99_ms'], 2)}"
          f"  p99.9 {fmt(run['p99_9_ms'], 2)} ms{over}{errs}")
    return 0


# ------------------------------------------------------------------------------- aggregation
def ordered_peers(runs: list[dict]) -> list[str]:
    seen = []
    for r in runs:
        if r["peer"] not in seen:
            seen.append(r["peer"])
    return sorted(seen, key=lambda p: (PEER_ORDER.index(p) if p in PEER_ORDER else 99, seen.index(p)))


def aggregate(runs: list[dict], key: str, fields: list[str]) -> dict:
    """(peer, runs[key]) -> medians over rounds of fields (peak RSS: the largest over rounds)."""
    cells: dict = {}
    for r in runs:
        cells.setdefault((r["peer"], r[key]), []).append(r)
    out = {}
    for cell_key, rs in cells.items():
        good = [r for r in rs if r.get("wrk") or r.get("oha")]

        def med(field):
            vals = [r[field] for r in good if r.get(field) is not None]
            return statistics.median(vals) if vals else None

        rss = [r["rss_mib"] for r in good if r.get("rss_mib") is not None]
        out[cell_key] = {
            "rounds": len(rs),
            **{f: med(f) for f in fields},
            "rss_mib": max(rss) if rss else None,
            "problems": sorted({f"round {r['round']}: {p}" for r in rs for p in r["problems"]}),
        }
    return out


CLOSED_FIELDS = ["rps", "p50_ms", "p99_ms", "p99_9_ms", "cpu_s_per_100k", "other_cores"]
OPEN_FIELDS = ["achieved_rps", "p50_ms", "p99_ms", "p99_9_ms", "overhead_p99_ms",
               "cpu_s_per_100k", "other_cores"]


def fmt(value, digits: int) -> str:
    if value is None:
        return "—"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def with_ratio(value, ref, digits: int) -> str:
    text = fmt(value, digits)
    if value is None or not ref:
        return text
    return f"{text} ({value / ref:.2f}×)"


def ratio(a, b) -> str:
    return "—" if a is None or b is None or b <= 0 else f"{a / b:.2f}×"


COLUMNS = [  # field, header, digits
    ("rps", "req/s", 0),
    ("p50_ms", "p50 ms", 2),
    ("p99_ms", "p99 ms", 2),
    ("p99_9_ms", "p99.9 ms", 2),
    ("rss_mib", "peak RSS MiB", 1),
    ("cpu_s_per_100k", "CPU s / 100k req", 2),
]


# ---------------------------------------------------------------------------------- markdown
def verdict(cell: dict, notes: list[str], what: str) -> tuple[str, int]:
    """The `sane` column of one cell: ok, or a numbered note (appended to `notes`) naming its
    problems, marked noisy when other work used the cores; and 1 when it was noisy, else 0."""
    sane = "ok" if not cell["problems"] else f"⚠ [{len(notes) + 1}]"
    if cell["problems"]:
        notes.append(f"{what}: " + "; ".join(cell["problems"]))
    other = cell["other_cores"]
    if other is not None and other > NOISE_CORES:
        return sane + " noisy", 1
    return sane, 0


def closed_section(agg: dict, peers: list[str], conns: list[int]) -> list[str]:
    lines = ["Each cell is the median over rounds (peak RSS: the largest over rounds) and, in "
             "brackets, its ratio to nginx at the same connection count. Throughput: higher is "
             "better; everything else: lower is better. `direct` is wrk straight to the upstream "
             "(the ceiling; no proxy, so no RSS or CPU figures).", ""]
    header = "| peer | conns | " + " | ".join(h for _, h, _ in COLUMNS) + " | other CPU | sane |"
    lines += [header, "|" + "---|" * (len(COLUMNS) + 4)]
    noisy = 0
    notes = []
    for c in conns:
        ref = agg.get(("nginx", c), {})
        for p in peers:
            cell = agg.get((p, c))
            if cell is None:
                continue
            vals = [with_ratio(cell[f], ref.get(f), d) for f, _, d in COLUMNS]
            sane, loud = verdict(cell, notes, f"{p} at {c} connections")
            noisy += loud
            other = cell["other_cores"]
            lines.append(f"| {p} | {c} | " + " | ".join(vals) + f" | {fmt(other, 2)} | {sane} |")
    lines.append("")
    lines += noise_notes(noisy, notes, "wrk socket errors or non-2xx answers")
    return lines


def noise_notes(noisy: int, notes: list[str], what: str) -> list[str]:
    lines = ["`other CPU`: cores that processes outside the measurement used on average during "
             "the run (all busy CPU time minus the proxy's, the upstream's and the load "
             "generator's); near 0 on a quiet machine. Rows over "
             f"{NOISE_CORES} are marked `noisy`: another workload shared the cores, so their "
             "figures and ratios are not to be trusted.", ""]
    if noisy:
        lines.append(f"**{noisy} rows were measured while other work ran on the machine; rerun on a "
                     "quiet machine before drawing conclusions.**")
        lines.append("")
    if notes:
        lines.append(f"Rows marked ⚠ had runs with problems ({what}):")
        lines.append("")
        lines += [f"{i}. {n}" for i, n in enumerate(notes, 1)]
        lines.append("")
    return lines


def p99_added(agg_open: dict, peer: str, rate: int):
    cell, base = agg_open.get((peer, rate)), agg_open.get(("direct", rate))
    if not cell or not base or cell.get("p99_ms") is None or base.get("p99_ms") is None:
        return None
    return cell["p99_ms"] - base["p99_ms"]


def open_section(raw: dict, agg_open: dict, peers: list[str], rates: list[int]) -> list[str]:
    m, params = raw["meta"], raw["meta"].get("params", {})
    lines = ["## Open loop: fixed request rates (oha, coordinated omission corrected)", ""]
    lines.append(
        f"{m.get('oha') or 'oha'} at each rate for {params.get('DURATION')} s over "
        f"{params.get('OPEN_CONNECTIONS')} keep-alive connections (`oha -q RATE "
        "--latency-correction`), after an unmeasured warm-up at the same rate. Every request has "
        "a due time fixed in advance and its latency runs from that due time to the end of its "
        "answer, so when a peer stalls, every request due during the stall is charged the wait "
        "(no coordinated omission). Each cell is the median over rounds. `p99 added`: the peer's "
        "p99 minus `direct`'s at the same rate (median minus median): what the proxy adds to the "
        "tail. `Tollgate overhead p99`: from Tollgate's own `tollgate_overhead_seconds` histogram "
        "(the time Tollgate itself added: its total time minus the partner's and deliberate "
        "waits), its bucket counts over the measured run (admin `/metrics` after minus before), "
        "the p99 interpolated linearly inside its bucket; the buckets (50, 100, 250, 500 µs, "
        "1, 2.5, 5, 10, 25, 100 ms) make it a coarse figure. `achieved`: 2xx answers per "
        f"second; a run under {RATE_HELD:.0%} of its rate did not hold it (⚠).")
    lines.append("")
    lines += ["| rate req/s | peer | achieved req/s | p50 ms | p99 ms | p99.9 ms | p99 added ms "
              "| Tollgate overhead p99 ms | peak RSS MiB | CPU s / 100k req | other CPU | sane |",
              "|" + "---|" * 12]
    noisy = 0
    notes = []
    for q in rates:
        for p in peers:
            cell = agg_open.get((p, q))
            if cell is None:
                continue
            sane, loud = verdict(cell, notes, f"{p} at {q:,} req/s")
            noisy += loud
            other = cell["other_cores"]
            added = "—" if p == "direct" else fmt(p99_added(agg_open, p, q), 2)
            lines.append(
                f"| {q:,} | {p} | {fmt(cell['achieved_rps'], 0)} | {fmt(cell['p50_ms'], 2)} | "
                f"{fmt(cell['p99_ms'], 2)} | {fmt(cell['p99_9_ms'], 2)} | {added} | "
                f"{fmt(cell['overhead_p99_ms'], 3)} | {fmt(cell['rss_mib'], 1)} | "
                f"{fmt(cell['cpu_s_per_100k'], 2)} | {fmt(other, 2)} | {sane} |")
    lines.append("")
    lines += noise_notes(noisy, notes, "oha errors, non-2xx answers, or the rate not held")
    others = [p for p in peers if p not in ("direct", "nginx")]
    if "direct" not in peers:
        lines += ["No `direct` row in this run: `p99 added` needs it.", ""]
    elif "nginx" in peers and others:
        lines += ["### p99 added, against nginx's", ""]
        lines += ["| rate req/s | peer | p99 added ms | nginx p99 added ms | ratio | "
                  "Tollgate overhead p99 ms |", "|---|---|---|---|---|---|"]
        for q in rates:
            n_add = p99_added(agg_open, "nginx", q)
            for p in others:
                if (p, q) not in agg_open:
                    continue
                add = p99_added(agg_open, p, q)
                lines.append(f"| {q:,} | {p} | {fmt(add, 2)} | {fmt(n_add, 2)} | "
                             f"{ratio(add, n_add)} | {fmt(agg_open[(p, q)]['overhead_p99_ms'], 3)} |")
        lines.append("")
        lines += ["Ratio: the peer's p99 added over nginx's (lower is better; — when nginx added "
                  "nothing measurable). At these rates the added p99 is a fraction of a "
                  "millisecond, so a few tens of microseconds of noise move the ratio a lot: read "
                  "it beside the absolute figures.", ""]
    return lines


def every_core_section(agg: dict, conns: list[int]) -> list[str]:
    t_name, n_name = EVERY_CORE
    rows = []
    for c in conns:
        t, n = agg.get((t_name, c)), agg.get((n_name, c))
        if not t or not n:
            continue
        rows.append(f"| {c} | {fmt(t['rps'], 0)} | {fmt(n['rps'], 0)} | {ratio(t['rps'], n['rps'])} | "
                    f"{fmt(t['p99_ms'], 2)} | {fmt(n['p99_ms'], 2)} | {ratio(t['p99_ms'], n['p99_ms'])} |")
    if not rows:
        return []
    lines = [f"## Every core: `{t_name}` against `{n_name}`", ""]
    lines.append("Both with two workers and not pinned (the kernel spreads them over both cores, "
                 "beside wrk and the upstream), closed loop as above. Medians over rounds; ratios "
                 f"are {t_name} / {n_name} (throughput: higher is better; p99: lower is better).")
    lines += ["", f"| conns | {t_name} req/s | {n_name} req/s | ratio | {t_name} p99 ms | "
                  f"{n_name} p99 ms | ratio |", "|---|---|---|---|---|---|---|"]
    return lines + rows + [""]


def markdown(raw: dict, agg: dict, agg_open: dict, peers: list[str], conns: list[int],
             open_peers: list[str], rates: list[int], pngs: dict) -> str:
    m, params = raw["meta"], raw["meta"].get("params", {})
    lines = ["# Tollgate load benchmark: latest run", ""]
    lines.append(
        f"{m['date_utc']}, git {m['git']}. Made by `bench/load.sh` "
        f"(MODE={params.get('MODE', 'closed')}, DURATION={params.get('DURATION')} s, "
        f"ROUNDS={params.get('ROUNDS')}, WARMUP={params.get('WARMUP')} s per run, "
        f"wrk -t{params.get('WRK_THREADS')}).")
    lines.append("")
    if conns:
        lines += closed_section(agg, peers, conns)
    if rates:
        lines += open_section(raw, agg_open, open_peers, rates)
    lines += every_core_section(agg, conns)

    # Targets from shared/DESIGN.md and issue 6, for the pinned one-worker row.
    t64, n64 = agg.get(("tollgate", 64)), agg.get(("nginx", 64))
    t256 = agg.get(("tollgate", 256))
    start = raw.get("startup") or {}

    def verdict(ok):
        return "—" if ok is None else ("met" if ok else "**not met**")

    def both(a, b, f):
        return a is not None and b is not None and a.get(f) is not None and b.get(f) is not None

    rows = []
    if both(t64, n64, "rps"):
        rows.append(("throughput ≥ nginx at 64 connections",
                     f"{t64['rps']:,.0f} vs {n64['rps']:,.0f} req/s", t64["rps"] >= n64["rps"]))
    if both(t64, n64, "p99_ms"):
        rows.append(("p99 ≤ nginx at 64 connections",
                     f"{t64['p99_ms']:.2f} vs {n64['p99_ms']:.2f} ms", t64["p99_ms"] <= n64["p99_ms"]))
    # Issue 17: caller auth ("required", one key) costs at most 3 % CPU per request.
    for c in conns:
        anon, keyed = agg.get(("tollgate", c)), agg.get(("tollgate-callers", c))
        if both(anon, keyed, "cpu_s_per_100k"):
            r = keyed["cpu_s_per_100k"] / anon["cpu_s_per_100k"]
            rows.append((f"caller auth CPU/request within 3 % of anonymous at {c} connections",
                         f"tollgate-callers {keyed['cpu_s_per_100k']:.2f} vs tollgate "
                         f"{anon['cpu_s_per_100k']:.2f} s / 100k req ({r:.3f}×)",
                         r <= 1.03))
    for label, cell in (("64", t64), ("256", t256)):
        if cell and cell.get("rss_mib") is not None:
            rows.append((f"peak RSS < 32 MiB at {label} connections", f"{cell['rss_mib']:.1f} MiB",
                         cell["rss_mib"] < 32))
    if start.get("median_ms") is not None:
        rows.append(("start-up to /readyz 200 < 100 ms",
                     f"median {start['median_ms']:.1f} ms of {len(start['runs_ms'])} "
                     f"({', '.join(f'{x:.1f}' for x in start['runs_ms'])})",
                     start["median_ms"] < 100))
    if rows:
        lines += ["## Targets (the pinned `tollgate` row against nginx, same run)", ""]
        lines += ["| target | measured | |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {verdict(c)} |" for a, b, c in rows]
        lines.append("")
    if start.get("median_ms") is not None:
        lines.append("Start-up is measured from spawning `tollgate --workers 1 run` (pinned, emulator "
                     "already up) to the first `200` from its admin `/readyz`, polled every millisecond.")
        lines.append("")

    lines += ["## Set-up", ""]
    lines.append("- Everything on 127.0.0.1. Upstream: nginx, one worker, `return 200` with a "
                 "72-byte JSON body, keep-alive. The load generator (wrk, oha) and the upstream "
                 "pinned to core 0 (`taskset -c 0`).")
    lines.append("- Every proxy pinned to core 1 (`taskset -c 1`) unless said otherwise, and doing "
                 "the same work: "
                 "`/ottimate/v1/...` → upstream `/v1/...`, caller `Authorization` and `X-API-Key` "
                 "removed (the load generator sends both), `X-API-Key` and `Authorization: Bearer "
                 "<token>` added, "
                 "`X-Request-Id` added upstream and returned, pooled keep-alive upstream connections. "
                 "nginx: 1 worker, upstream `keepalive 128`; HAProxy: `nbthread 1`, `http-reuse always`; "
                 "`tollgate`: `--workers 1`, an OAuth2 token fetched from the emulator and cached; "
                 "`tollgate-default`: the default runtime (one worker per core), not pinned; "
                 "`tollgate-shared`: as `tollgate`, its rate limit and pause kept in a local Redis "
                 "(`[shared]`; Redis on core 0); `tollgate-callers`: as `tollgate`, with one "
                 "`[clients]` key (`caller_auth` \"required\"; the load generator also sends "
                 "`Proxy-Authorization: Bearer <key>`, which is checked and removed); "
                 "`tollgate-workers2`: as `tollgate` with `--workers 2`, not pinned; "
                 "`nginx-workers2`: as `nginx` with `worker_processes 2`, not pinned. "
                 "Every Tollgate row has the same high rate limit, "
                 "which never rejects here. "
                 "Configs: `bench/*.conf`, `bench/haproxy.cfg`, `bench/tollgate.toml`.")
    lines.append("- Peers interleaved within each round (order rotated every round); each measured run "
                 "is preceded by an unmeasured warm-up at the same connection count or rate.")
    lines.append("- Peak RSS: `VmHWM` of the proxy's worker process (nginx: the worker, not the "
                 "master; `nginx-workers2`: the sum over both workers), reset before each run "
                 "(`echo 5 > /proc/PID/clear_refs`). CPU: utime+stime "
                 "of that process (or both workers) from `/proc/PID/stat` before and after the run, "
                 "per 100k requests.")
    lines.append("- Sane: zero wrk socket errors (connect, read, write, timeout) and zero non-2xx "
                 "(wrk's status errors); open loop: zero oha errors (the requests its deadline cut "
                 "short at the end of a run are not errors), zero non-2xx, the rate held. A "
                 "pre-flight request through each peer checked the path rewrite and the injected "
                 "headers.")
    lines.append("")
    lines += ["## Machine", ""]
    lines.append(f"- nproc: {m['nproc_online']}; CPU: {m['cpu_model']}; kernel: {m['kernel']}")
    tools = [m["nginx"], m["haproxy"], m["wrk"]] + ([m["oha"]] if m.get("oha") else []) + [m["rustc"]]
    lines.append("- " + "; ".join(tools))
    lines.append("")
    if pngs.get("closed"):
        lines += [f"![throughput and p99 per peer]({pngs['closed']})", ""]
    if pngs.get("open"):
        lines += [f"![open loop: p99 and p99 added per rate]({pngs['open']})", ""]
    lines.append("Every run: `raw.json`.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ charts
def pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("summarise.py: matplotlib missing (python3-matplotlib): no PNG", file=sys.stderr)
        return None
    return plt


def save(plt, fig, legend_from, columns: int, path: str) -> bool:
    """One legend under both panels (from the axes `legend_from`), then the PNG at `path`."""
    handles, labels = legend_from.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot(agg: dict, peers: list[str], conns: list[int], path: str) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(len(peers), 1)
    xs = range(len(conns))
    for i, p in enumerate(peers):
        off = [x - 0.4 + width * (i + 0.5) for x in xs]
        rps = [(agg.get((p, c)) or {}).get("rps") or 0 for c in conns]
        p99 = [(agg.get((p, c)) or {}).get("p99_ms") or 0 for c in conns]
        colour = COLOURS.get(p)
        ax_t.bar(off, rps, width, label=p, color=colour)
        ax_l.bar(off, p99, width, label=p, color=colour)
    for ax, title, unit in ((ax_t, "Throughput (higher is better)", "requests / s"),
                            (ax_l, "p99 latency (lower is better)", "ms")):
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([f"{c} conns" for c in conns])
        ax.grid(axis="y", alpha=0.3)
    return save(plt, fig, ax_t, len(peers), path)


def plot_open(agg_open: dict, peers: list[str], rates: list[int], path: str) -> bool:
    """Open loop: p99 per peer and rate, and p99 added over direct (with Tollgate's own
    overhead p99 from its histogram as a marker on the Tollgate rows)."""
    plt = pyplot()
    if plt is None:
        return False
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = range(len(rates))
    width = 0.8 / max(len(peers), 1)
    proxies = [p for p in peers if p != "direct"]
    width_a = 0.8 / max(len(proxies), 1)
    marked = False
    for i, p in enumerate(peers):
        off = [x - 0.4 + width * (i + 0.5) for x in xs]
        p99 = [(agg_open.get((p, q)) or {}).get("p99_ms") or 0 for q in rates]
        ax_l.bar(off, p99, width, label=p, color=COLOURS.get(p))
    for i, p in enumerate(proxies):
        off = [x - 0.4 + width_a * (i + 0.5) for x in xs]
        added = [p99_added(agg_open, p, q) or 0 for q in rates]
        ax_a.bar(off, added, width_a, color=COLOURS.get(p))
        over = [(agg_open.get((p, q)) or {}).get("overhead_p99_ms") for q in rates]
        pts = [(o, v) for o, v in zip(off, over) if v is not None]
        if pts:
            ax_a.scatter([o for o, _ in pts], [v for _, v in pts], marker="D", s=22, color="black",
                         zorder=3, label=None if marked else "Tollgate overhead p99 (its metric)")
            marked = True
    for ax, title in ((ax_l, "Open loop: p99 latency (lower is better)"),
                      (ax_a, "p99 added over direct (lower is better)")):
        ax.set_title(title)
        ax.set_ylabel("ms")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([f"{q:,} req/s" for q in rates])
        ax.grid(axis="y", alpha=0.3)
    ax_a.axhline(0, color="black", linewidth=0.6)
    if marked:  # room above the bars and markers for the marker's legend
        ax_a.set_ylim(top=ax_a.get_ylim()[1] * 1.2)
        ax_a.legend(fontsize=8, frameon=False, loc="upper left")
    return save(plt, fig, ax_l, len(peers), path)


def raw_json(raw: dict) -> str:
    """Indented, but one line per run: small and readable in a diff."""
    head = {k: v for k, v in raw.items() if k != "runs"}
    text = json.dumps(head, indent=1)[:-2]
    runs = ",\n  ".join(json.dumps(r, separators=(",", ":")) for r in raw["runs"])
    return text + ',\n "runs": [\n  ' + runs + "\n ]\n}\n"


def cmd_report(args) -> int:
    if args.raw:
        with open(args.raw) as f:
            raw = json.load(f)
    else:
        with open(os.path.join(args.work, "meta.json")) as f:
            meta = json.load(f)
        startup = None
        sp = os.path.join(args.work, "startup.json")
        if os.path.exists(sp):
            with open(sp) as f:
                startup = json.load(f)
        with open(os.path.join(args.work, "runs.jsonl")) as f:
            runs = [resolve_files(json.loads(line)) for line in f if line.strip()]
        raw = {"meta": meta, "startup": startup, "runs": runs}
    raw["runs"] = [derive(r) for r in raw["runs"]]
    os.makedirs(args.out, exist_ok=True)
    if not args.raw:
        with open(os.path.join(args.out, "raw.json"), "w") as f:
            f.write(raw_json(raw))
    closed = [r for r in raw["runs"] if not is_open(r)]
    opened = [r for r in raw["runs"] if is_open(r)]
    peers, open_peers = ordered_peers(closed), ordered_peers(opened)
    conns = sorted({r["connections"] for r in closed})
    rates = sorted({r["rate"] for r in opened})
    agg = aggregate(closed, "connections", CLOSED_FIELDS)
    agg_open = aggregate(opened, "rate", OPEN_FIELDS)
    pngs = {}
    if closed and plot(agg, peers, conns, os.path.join(args.out, "latest.png")):
        pngs["closed"] = "latest.png"
    if opened and plot_open(agg_open, open_peers, rates, os.path.join(args.out, "latest-open.png")):
        pngs["open"] = "latest-open.png"
    text = markdown(raw, agg, agg_open, peers, conns, open_peers, rates, pngs)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description="Machine facts and the report for bench/load.sh.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("meta", help="collect machine facts and parameters")
    m.add_argument("--out", required=True)
    m.add_argument("--oha", help="the oha binary of the open-loop runs (its version is recorded)")
    m.add_argument("--param", action="append", default=[], help="KEY=VALUE, repeatable")
    r = sub.add_parser("report", help="write raw.json, latest.md and the PNGs")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--work", help="load.sh's work directory")
    src.add_argument("--raw", help="an earlier raw.json")
    r.add_argument("--out", required=True)
    o = sub.add_parser("oha-line", help="one progress line for an oha run")
    o.add_argument("--oha", required=True, help="oha's JSON output")
    o.add_argument("--metrics", nargs=2, metavar=("BEFORE", "AFTER"),
                   help="tollgate_overhead_seconds bucket lines before and after the run")
    args = ap.parse_args()
    if args.cmd == "meta":
        return cmd_meta(args)
    if args.cmd == "oha-line":
        return cmd_oha_line(args)
    return cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
