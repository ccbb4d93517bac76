#!/usr/bin/env python3
"""Measure Tollgate's start-up: time from spawning the command to the first `200` from `/readyz`.

Used by bench/load.sh (standard library only):

    startup.py --runs 5 --url http://127.0.0.1:18088/readyz --out startup.json -- CMD ARGS...

Each run spawns CMD, polls the URL every millisecond until it answers 200 (at most --timeout
seconds), records the elapsed milliseconds, then stops the process (SIGTERM, SIGKILL after 5 s)
before the next run. Writes {"runs_ms": [...], "median_ms": m, "command": [...]} to --out.
"""

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
import urllib.parse


def ready(host: str, port: int, path: str) -> bool:
    """One probe: True when the URL answers 200; False when refused, reset or not yet 200."""
    conn = http.client.HTTPConnection(host, port, timeout=0.5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def one_run(cmd: list[str], url: urllib.parse.SplitResult, timeout: float, log) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        while True:
            if ready(url.hostname, url.port, url.path or "/"):
                return (time.perf_counter() - start) * 1000.0
            if proc.poll() is not None:
                raise RuntimeError(f"the process exited with {proc.returncode} before it was ready")
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"not ready after {timeout} s")
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--url", required=True, help="the admin /readyz URL")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", default="/dev/null", help="where the process's output goes")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("no command given")
    url = urllib.parse.urlsplit(args.url)
    if ready(url.hostname, url.port, url.path or "/"):
        print(f"startup.py: {args.url} already answers before start: port taken?", file=sys.stderr)
        return 1
    samples = []
    with open(args.log, "ab") as log:
        for i in range(args.runs):
            try:
                samples.append(round(one_run(cmd, url, args.timeout, log), 2))
            except RuntimeError as e:
                print(f"startup.py: run {i + 1}: {e}", file=sys.stderr)
                return 1
            time.sleep(0.2)
    result = {"runs_ms": samples, "median_ms": statistics.median(samples), "command": cmd}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"start-up to /readyz 200: median {result['median_ms']:.1f} ms, runs {samples}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
