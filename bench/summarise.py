#!/usr/bin/env python3
"""Machine facts and the report for bench/load.sh.

    summarise.py meta --out meta.json [--param KEY=VALUE ...]
        Collect the machine facts (nproc, CPU model, kernel, tool versions, git revision) and the
        run parameters into meta.json, at the start of a run.

    summarise.py report --work DIR --out bench/results
        Read DIR/meta.json, DIR/startup.json and DIR/runs.jsonl (one line per wrk run, written by
        load.sh) and write raw.json (every run), latest.md (medians over rounds, ratios to nginx)
        and latest.png (throughput and p99 per peer) into --out.

    summarise.py report --raw bench/results/raw.json --out bench/results
        Re-render latest.md and latest.png from an earlier raw.json.

Needs matplotlib only for the PNG (Debian: python3-matplotlib); without it the PNG is skipped
with a warning and the rest is written.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone

# Display order and colours; peers not listed here go last in the order they appear.
PEER_ORDER = ["direct", "nginx", "haproxy", "tollgate", "tollgate-default", "tollgate-shared",
              "tollgate-callers"]
COLOURS = {
    "direct": "#9e9e9e",
    "nginx": "#2e7d32",
    "haproxy": "#1565c0",
    "tollgate": "#e65100",
    "tollgate-default": "#ffb74d",
    "tollgate-shared": "#8d6e63",
    "tollgate-callers": "#6a1b9a",
}
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
        "rustc": first_line(["rustc", "-V"]),
        "git": rev + (" (dirty work tree)" if dirty else ""),
        "params": dict(p.split("=", 1) for p in args.param),
    }
    with open(args.out, "w") as f:
        json.dump(meta, f, indent=1)
    return 0


# ------------------------------------------------------------------------------------- report
def derive(run: dict) -> dict:
    """Add the derived figures and the sanity verdict to one raw run record."""
    w = run.get("wrk")
    problems = []
    if not run.get("alive", True):
        problems.append("process died")
    if w is None:
        problems.append(f"no wrk result (exit {run.get('wrk_exit')})")
        run.update(ok=False, problems=problems)
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
    if run["peer"] not in NOT_PROXIES and run.get("cpu_ticks") is not None and w["requests"]:
        run["cpu_s_per_100k"] = run["cpu_ticks"] / run["clk_tck"] / w["requests"] * 1e5
    if run.get("other_cpu_ticks") is not None and secs > 0:
        run["other_cores"] = max(run["other_cpu_ticks"], 0) / run["clk_tck"] / secs
    if run.get("rss_hwm_kib") is not None and run["peer"] not in NOT_PROXIES:
        run["rss_mib"] = run["rss_hwm_kib"] / 1024
    run["ok"] = not problems
    run["problems"] = problems
    return run


def ordered_peers(runs: list[dict]) -> list[str]:
    seen = []
    for r in runs:
        if r["peer"] not in seen:
            seen.append(r["peer"])
    return sorted(seen, key=lambda p: (PEER_ORDER.index(p) if p in PEER_ORDER else 99, seen.index(p)))


def aggregate(runs: list[dict]) -> dict:
    """(peer, connections) -> medians over rounds (peak RSS: the largest over rounds)."""
    cells: dict = {}
    for r in runs:
        cells.setdefault((r["peer"], r["connections"]), []).append(r)
    out = {}
    for key, rs in cells.items():
        good = [r for r in rs if r.get("wrk")]

        def med(field):
            vals = [r[field] for r in good if r.get(field) is not None]
            return statistics.median(vals) if vals else None

        rss = [r["rss_mib"] for r in good if r.get("rss_mib") is not None]
        out[key] = {
            "rounds": len(rs),
            "rps": med("rps"),
            "p50_ms": med("p50_ms"),
            "p99_ms": med("p99_ms"),
            "p99_9_ms": med("p99_9_ms"),
            "rss_mib": max(rss) if rss else None,
            "cpu_s_per_100k": med("cpu_s_per_100k"),
            "other_cores": med("other_cores"),
            "problems": sorted({f"round {r['round']}: {p}" for r in rs for p in r["problems"]}),
        }
    return out


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


COLUMNS = [  # field, header, digits
    ("rps", "req/s", 0),
    ("p50_ms", "p50 ms", 2),
    ("p99_ms", "p99 ms", 2),
    ("p99_9_ms", "p99.9 ms", 2),
    ("rss_mib", "peak RSS MiB", 1),
    ("cpu_s_per_100k", "CPU s / 100k req", 2),
]


def markdown(raw: dict, agg: dict, peers: list[str], conns: list[int], png_name: str | None) -> str:
    m, params = raw["meta"], raw["meta"].get("params", {})
    lines = ["# Tollgate load benchmark: latest run", ""]
    lines.append(
        f"{m['date_utc']}, git {m['git']}. Made by `bench/load.sh` "
        f"(DURATION={params.get('DURATION')} s, ROUNDS={params.get('ROUNDS')}, "
        f"WARMUP={params.get('WARMUP')} s per run, wrk -t{params.get('WRK_THREADS')}).")
    lines.append("")
    lines.append("Each cell is the median over rounds (peak RSS: the largest over rounds) and, in "
                 "brackets, its ratio to nginx at the same connection count. Throughput: higher is "
                 "better; everything else: lower is better. `direct` is wrk straight to the upstream "
                 "(the ceiling; no proxy, so no RSS or CPU figures).")
    lines.append("")
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
            sane = "ok" if not cell["problems"] else f"⚠ [{len(notes) + 1}]"
            if cell["problems"]:
                notes.append(f"{p} at {c} connections: " + "; ".join(cell["problems"]))
            other = cell["other_cores"]
            if other is not None and other > NOISE_CORES:
                noisy += 1
                sane += " noisy"
            lines.append(f"| {p} | {c} | " + " | ".join(vals) + f" | {fmt(other, 2)} | {sane} |")
    lines.append("")
    lines.append("`other CPU`: cores that processes outside the measurement used on average during "
                 "the run (all busy CPU time minus the proxy's, the upstream's and wrk's); near 0 on a "
                 f"quiet machine. Rows over {NOISE_CORES} are marked `noisy`: another workload shared "
                 "the cores, so their figures and ratios are not to be trusted.")
    lines.append("")
    if noisy:
        lines.append(f"**{noisy} rows were measured while other work ran on the machine; rerun on a "
                     "quiet machine before drawing conclusions.**")
        lines.append("")
    if notes:
        lines.append("Rows marked ⚠ had runs with errors (wrk socket errors or non-2xx answers):")
        lines.append("")
        lines += [f"{i}. {n}" for i, n in enumerate(notes, 1)]
        lines.append("")

    # Targets from shared/DESIGN.md and issue 6, for the pinned one-worker row.
    lines += ["## Targets (the pinned `tollgate` row against nginx, same run)", ""]
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
            ratio = keyed["cpu_s_per_100k"] / anon["cpu_s_per_100k"]
            rows.append((f"caller auth CPU/request within 3 % of anonymous at {c} connections",
                         f"tollgate-callers {keyed['cpu_s_per_100k']:.2f} vs tollgate "
                         f"{anon['cpu_s_per_100k']:.2f} s / 100k req ({ratio:.3f}×)",
                         ratio <= 1.03))
    for label, cell in (("64", t64), ("256", t256)):
        if cell and cell.get("rss_mib") is not None:
            rows.append((f"peak RSS < 32 MiB at {label} connections", f"{cell['rss_mib']:.1f} MiB",
                         cell["rss_mib"] < 32))
    if start.get("median_ms") is not None:
        rows.append(("start-up to /readyz 200 < 100 ms",
                     f"median {start['median_ms']:.1f} ms of {len(start['runs_ms'])} "
                     f"({', '.join(f'{x:.1f}' for x in start['runs_ms'])})",
                     start["median_ms"] < 100))
    lines += ["| target | measured | |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {verdict(c)} |" for a, b, c in rows]
    lines.append("")
    lines.append("Start-up is measured from spawning `tollgate --workers 1 run` (pinned, emulator "
                 "already up) to the first `200` from its admin `/readyz`, polled every millisecond.")
    lines.append("")

    lines += ["## Set-up", ""]
    lines.append("- Everything on 127.0.0.1. Upstream: nginx, one worker, `return 200` with a "
                 "72-byte JSON body, keep-alive. wrk and the upstream pinned to core 0 "
                 "(`taskset -c 0`).")
    lines.append("- Every proxy pinned to core 1 (`taskset -c 1`) and doing the same work: "
                 "`/ottimate/v1/...` → upstream `/v1/...`, caller `Authorization` and `X-API-Key` "
                 "removed (wrk sends both), `X-API-Key` and `Authorization: Bearer <token>` added, "
                 "`X-Request-Id` added upstream and returned, pooled keep-alive upstream connections. "
                 "nginx: 1 worker, upstream `keepalive 128`; HAProxy: `nbthread 1`, `http-reuse always`; "
                 "`tollgate`: `--workers 1`, an OAuth2 token fetched from the emulator and cached; "
                 "`tollgate-default`: the default runtime (one worker per core), not pinned; "
                 "`tollgate-shared`: as `tollgate`, its rate limit and pause kept in a local Redis "
                 "(`[shared]`; Redis on core 0); `tollgate-callers`: as `tollgate`, with one "
                 "`[clients]` key (`caller_auth` \"required\"; wrk also sends "
                 "`Proxy-Authorization: Bearer <key>`, which is checked and removed). "
                 "Every Tollgate row has the same high rate limit, "
                 "which never rejects here. "
                 "Configs: `bench/*.conf`, `bench/haproxy.cfg`, `bench/tollgate.toml`.")
    lines.append("- Peers interleaved within each round (order rotated every round); each measured run "
                 "is preceded by an unmeasured warm-up at the same connection count.")
    lines.append("- Peak RSS: `VmHWM` of the proxy's worker process (nginx: the worker, not the "
                 "master), reset before each run (`echo 5 > /proc/PID/clear_refs`). CPU: utime+stime "
                 "of that process from `/proc/PID/stat` before and after the run, per 100k requests.")
    lines.append("- Sane: zero wrk socket errors (connect, read, write, timeout) and zero non-2xx "
                 "(wrk's status errors); a pre-flight request through each peer checked the path "
                 "rewrite and the injected headers.")
    lines.append("")
    lines += ["## Machine", ""]
    lines.append(f"- nproc: {m['nproc_online']}; CPU: {m['cpu_model']}; kernel: {m['kernel']}")
    lines.append(f"- {m['nginx']}; {m['haproxy']}; {m['wrk']}; {m['rustc']}")
    lines.append("")
    if png_name:
        lines += [f"![throughput and p99 per peer]({png_name})", ""]
    lines.append("Every run: `raw.json`.")
    return "\n".join(lines) + "\n"


def plot(agg: dict, peers: list[str], conns: list[int], path: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("summarise.py: matplotlib missing (python3-matplotlib): no PNG", file=sys.stderr)
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
    handles, labels = ax_t.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(peers), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


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
            runs = [json.loads(line) for line in f if line.strip()]
        raw = {"meta": meta, "startup": startup, "runs": runs}
    raw["runs"] = [derive(r) for r in raw["runs"]]
    os.makedirs(args.out, exist_ok=True)
    if not args.raw:
        with open(os.path.join(args.out, "raw.json"), "w") as f:
            f.write(raw_json(raw))
    peers = ordered_peers(raw["runs"])
    conns = sorted({r["connections"] for r in raw["runs"]})
    agg = aggregate(raw["runs"])
    png = "latest.png" if plot(agg, peers, conns, os.path.join(args.out, "latest.png")) else None
    text = markdown(raw, agg, peers, conns, png)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description="Machine facts and the report for bench/load.sh.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("meta", help="collect machine facts and parameters")
    m.add_argument("--out", required=True)
    m.add_argument("--param", action="append", default=[], help="KEY=VALUE, repeatable")
    r = sub.add_parser("report", help="write raw.json, latest.md and latest.png")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--work", help="load.sh's work directory")
    src.add_argument("--raw", help="an earlier raw.json")
    r.add_argument("--out", required=True)
    args = ap.parse_args()
    return cmd_meta(args) if args.cmd == "meta" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
