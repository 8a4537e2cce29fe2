#!/usr/bin/env python3
"""Turns bench/results/results.csv into results.md and the gnuplot scripts
for throughput.png and memory.png. Run by bench/run.sh, which passes the
machine, commit, date and versions in BENCH_* environment variables.

    python3 bench/report.py RESULTS-DIR
"""
import csv
import math
import os
import sys

REFERENCE = "switchboard"  # ratios are REFERENCE / other
DISTURBED_WAIT = 20  # % of the run the server waited for its CPU: marked with †
LABELS = {
    "switchboard": "Switchboard",
    "switchboard-mem": "Switchboard (memory-only history)",
    "node-ws": "Node ws",
    "gorilla": "Go gorilla/websocket",
    "lws": "libwebsockets",
}
SCENARIO_TEXT = {
    "echo-100x16": "echo, 100 conns x 16 in flight x 64 B (round trips/s)",
    "fanout-1000": "fan-out to 1,000 subscribers, 64 B, 32 in flight (deliveries/s)",
    "fanout-5000": "fan-out to 5,000 subscribers, 64 B, 32 in flight (deliveries/s)",
    "fanout-1000-fixed": "fan-out to 1,000 subscribers at a fixed publish rate",
    "churn-100": "churn, 100 workers: connect, join, publish, read back, close (cycles/s)",
}


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def fmt_rate(v):
    return f"{v:,.0f}/s" if v is not None else ""


def fmt_us(v):
    if v is None:
        return ""
    return f"{v / 1000:,.1f} ms" if v >= 10000 else f"{v:,.0f} µs"


def fmt_mib(kb):
    return f"{kb / 1024:,.1f} MiB" if kb else ""


def fmt_ratio(r):
    if r is None:
        return ""
    return f"×{r:.2f}" if r < 10 else f"×{r:.1f}"


def pct(s):
    return f"{s}%" if s not in ("", None) else ""


def gp_quote(s):
    return s.replace("\\", "\\\\").replace('"', '\\"')


def main():
    out = sys.argv[1]
    env = os.environ.get
    machine, commit, date = env("BENCH_MACHINE", "?"), env("BENCH_COMMIT", "?"), env("BENCH_DATE", "?")
    with open(os.path.join(out, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))

    servers, scenarios = [], []
    for r in rows:
        if r["server"] not in servers:
            servers.append(r["server"])
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
    by = {(r["scenario"], r["server"]): r for r in rows}
    fixed_scen = [s for s in scenarios if s.endswith("-fixed")]
    rate_scen = [s for s in scenarios if not s.startswith("idle") and s not in fixed_scen]
    idle_scen = [s for s in scenarios if s.startswith("idle")]
    others = [s for s in servers if s != REFERENCE]

    def rate(sc, sv):
        r = by.get((sc, sv))
        return num(r["rate_per_s"]) if r and r["status"] == "ok" else None

    def per_conn(sc, sv):
        r = by.get((sc, sv))
        return num(r["rss_per_conn_kb"]) if r and r["status"] == "ok" else None

    def disturbed(sc, sv):
        r = by.get((sc, sv))
        w = num(r.get("server_wait_pct")) if r else None
        return w is not None and w >= DISTURBED_WAIT

    def mark(sc, sv):
        return "†" if disturbed(sc, sv) else ""

    def ratio(a, b):
        return a / b if a is not None and b else None

    def status_text(r):
        if r is None:
            return "not run"
        return r["status"] if r["status"] != "ok" else ""

    md = []
    md.append("# Benchmark results\n")
    md.append("Written by `make bench` (bench/run.sh); see [bench/README.md](../README.md) "
              "for what each scenario measures and how the peers are built.\n")
    md.append(f"- **Machine:** {machine}")
    md.append(f"- **Date:** {date}")
    md.append(f"- **Commit:** `{commit}`")
    md.append(f"- **Load:** {env('BENCH_LOAD', '?')} (1, 5, 15 min; anything else running "
              "on the machine takes CPU from the runs)")
    md.append(f"- **Software:** {env('BENCH_VERSIONS', '?')}")
    md.append(f"- **Method:** each server starts fresh for each scenario, listening on 127.0.0.1; "
              f"{env('BENCH_PINNING', '?')}; {env('BENCH_SECONDS', '?')} s measured per scenario "
              "(after every connection is open and, for fan-out, joined). Switchboard runs as a user "
              "would, with its SQLite history in a fresh data directory; the memory-only column is "
              "`--data-dir ''`. Each throughput scenario runs "
              f"{env('BENCH_REPEAT', '?')} times and the best run is kept. Rates and latencies are the "
              "load generator's; RSS per idle connection is the server's RssAnon, the other RSS "
              "figures its VmRSS.")
    md.append("- **Ratios** are Switchboard (SQLite history) ÷ the other server: above 1 means "
              "Switchboard delivers more per second (throughput), or has the higher p99 latency "
              "(fixed-rate fan-out) or uses more memory (RSS per connection).\n")

    # --- throughput summary
    md.append("## Throughput (higher is better)\n")
    head = "| Scenario | " + " | ".join(LABELS.get(s, s) for s in servers) + " |"
    md.append(head)
    md.append("|" + " --- |" * (len(servers) + 1))
    for sc in rate_scen:
        cells = []
        ref = rate(sc, REFERENCE)
        for sv in servers:
            r = by.get((sc, sv))
            v = rate(sc, sv)
            if v is None:
                cells.append(status_text(r) or "—")
            elif sv == REFERENCE:
                cells.append(f"**{fmt_rate(v)}**{mark(sc, sv)}")
            else:
                q = ratio(ref, v)
                cells.append(fmt_rate(v) + mark(sc, sv) + (f" ({fmt_ratio(q)})" if q else ""))
        md.append(f"| {SCENARIO_TEXT.get(sc, sc)} | " + " | ".join(cells) + " |")
    md.append("\nIn parentheses: Switchboard's rate ÷ that server's rate. † marks a run in which "
              f"the server waited for its CPU {DISTURBED_WAIT}% of the time or more (other work "
              "on the machine had it, or, for Node and Go, the server's own helper threads on the "
              "same core): that figure may be low by about that much.\n")

    # --- latency at a fixed load
    for sc in fixed_scen:
        md.append(f"## Latency at a fixed load (lower is better)\n")
        first = next((by[(sc, sv)] for sv in servers if (sc, sv) in by and by[(sc, sv)]["loadgen_output"]), None)
        target = ""
        if first:
            kv = dict(w.split("=", 1) for w in first["loadgen_output"].split() if "=" in w)
            target = kv.get("target_rate", "").removesuffix("/s")
        md.append(f"One publisher sends {target or 'a fixed number of'} messages a second to a room of 1,000 "
                  "subscribers, whatever the server; the figures are the delivery latency and "
                  "how many deliveries were lost.\n")
        md.append("| Server | Deliveries/s | p50 | p99 | Lost | Switchboard p99 ÷ this p99 |")
        md.append("| --- | --- | --- | --- | --- | --- |")
        ref99 = None
        r0 = by.get((sc, REFERENCE))
        if r0 and r0["status"] == "ok":
            ref99 = num(r0["p99_us"])
        for sv in servers:
            r = by.get((sc, sv))
            if r is None or r["status"] != "ok":
                md.append(f"| {LABELS.get(sv, sv)} | {status_text(r) or '—'} | | | | |")
                continue
            q = "" if sv == REFERENCE else fmt_ratio(ratio(ref99, num(r["p99_us"])))
            md.append(f"| {LABELS.get(sv, sv)} | {fmt_rate(num(r['rate_per_s']))} | {fmt_us(num(r['p50_us']))} | "
                      f"{fmt_us(num(r['p99_us']))} | {r['lost']} | {q} |")
        md.append("")

    # --- memory summary
    if idle_scen:
        sc = idle_scen[0]
        md.append(f"## Memory per connection (lower is better)\n")
        ref = per_conn(sc, REFERENCE)
        conns = sc.split("-", 1)[1] if "-" in sc else "?"
        md.append(f"{conns} connections opened and joined (rooms of at most 1,000 members), then "
                  "held idle; RSS per connection = (the server's anonymous memory, RssAnon, 11 s "
                  "after they have all joined − RssAnon before) ÷ joined connections, both read by "
                  "`loadgen idle --server-pid` (RssAnon leaves out the pages of the binary and its "
                  "libraries; the 11 s let periodic heap trims and garbage collectors run). "
                  "The last column is the most VmRSS in the last second of the hold (sampled by "
                  "bench/run.sh), for servers still busy with the joins when loadgen reads it.\n")
        md.append("| Server | RSS before | RSS once joined | RSS per connection | "
                  "Switchboard ÷ this | RSS at the end of the hold |")
        md.append("| --- | --- | --- | --- | --- | --- |")
        for sv in servers:
            r = by.get((sc, sv))
            v = per_conn(sc, sv)
            if v is None:
                md.append(f"| {LABELS.get(sv, sv)} | | | {status_text(r) or '—'} | | |")
                continue
            q = "" if sv == REFERENCE else fmt_ratio(ratio(ref, v))
            md.append(f"| {LABELS.get(sv, sv)} | {fmt_mib(num(r['rss_start_kb']))} | "
                      f"{fmt_mib(num(r['rss_joined_kb']))} | {v:,.1f} KiB | {q} | "
                      f"{fmt_mib(num(r['rss_loaded_kb']))} |")
        md.append("")

    # --- every figure
    md.append("## Every figure\n")
    md.append("RSS under load: the most VmRSS in the last second of the run; RSS after: half a "
              "second after the load generator closed its connections. Setup: seconds to open "
              "(and join) every connection before the measured window.\n")
    md.append("CPU columns, as shares of the wall time while the load generator ran (setup "
              "included): **Server CPU**, the server's CPU time; **Waited**, the time the server "
              "was ready to run but something else had its CPU (other work on the machine: a "
              "large figure means a disturbed run); **Loadgen CPU**, the load generator's CPU "
              "time. A server well below 100% while the load generator is near 100% was held "
              "back by the load generator, so its rate is a lower bound. Throughput scenarios "
              f"run {env('BENCH_REPEAT', '?')} times each and keep the best; the other rates "
              "are in the notes.\n")
    md.append("| Scenario | Server | Rate | p50 | p99 | RSS under load | RSS after | "
              "Switchboard ÷ this | Seconds | Setup | Server CPU | Waited | Loadgen CPU | Notes |")
    md.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for sc in scenarios:
        for sv in servers:
            r = by.get((sc, sv))
            if r is None:
                continue
            is_idle = sc.startswith("idle")
            if is_idle:
                q = "" if sv == REFERENCE else fmt_ratio(ratio(per_conn(sc, REFERENCE), per_conn(sc, sv)))
                v = per_conn(sc, sv)
                rate_cell = f"{v:,.1f} KiB/conn" if v is not None else ""
            elif sc in fixed_scen:  # same rate for all: compare p99 (lower is better)
                r0 = by.get((sc, REFERENCE))
                ref99 = num(r0["p99_us"]) if r0 and r0["status"] == "ok" else None
                mine = num(r["p99_us"]) if r["status"] == "ok" else None
                q = "" if sv == REFERENCE else fmt_ratio(ratio(ref99, mine))
                q = f"{q} (p99)" if q else ""
                rate_cell = fmt_rate(num(r["rate_per_s"])) if r["status"] == "ok" else ""
            else:
                q = "" if sv == REFERENCE else fmt_ratio(ratio(rate(sc, REFERENCE), rate(sc, sv)))
                rate_cell = fmt_rate(num(r["rate_per_s"])) if r["status"] == "ok" else ""
            notes = status_text(r)
            if r.get("failed") not in ("", "0", None):
                notes = (notes + "; " if notes else "") + f"failed={r['failed']}"
            if r.get("lost") not in ("", "0", None):
                notes = (notes + "; " if notes else "") + f"lost={r['lost']}"
            if r.get("other_rates"):
                other = ", ".join(fmt_rate(num(x)) for x in r["other_rates"].split())
                notes = (notes + "; " if notes else "") + f"other run: {other}"
            md.append(f"| {sc} | {sv} | {rate_cell} | {fmt_us(num(r['p50_us']))} | "
                      f"{fmt_us(num(r['p99_us']))} | {fmt_mib(num(r['rss_loaded_kb']))} | "
                      f"{fmt_mib(num(r['rss_after_kb']))} | {q} | {r['seconds']} | {r['setup_seconds']} | "
                      f"{pct(r['server_cpu_pct'])} | {pct(r['server_wait_pct'])} | "
                      f"{pct(r['loadgen_cpu_pct'])} | {notes} |")
    md.append("\nThe load generator's own line for every run is in results.csv "
              "(`loadgen_output`), with the exact command.\n")
    md.append("![throughput](throughput.png)\n\n![memory per connection](memory.png)\n")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md))

    # --- plots (gnuplot scripts; run.sh runs and then removes them)
    title_tail = gp_quote(machine) + "\\n" + gp_quote(f"{commit}, {date}")
    vals = [rate(sc, sv) for sc in rate_scen for sv in servers]
    vals = [v for v in vals if v]
    log = bool(vals) and max(vals) / min(vals) > 20
    with open(os.path.join(out, "throughput.dat"), "w") as f:
        f.write("scenario " + " ".join(f'"{LABELS.get(s, s)}"' for s in servers) + "\n")
        for sc in rate_scen:
            cells = []
            for sv in servers:
                v = rate(sc, sv)
                cells.append(f"{v:.0f}" if v else "?")
            f.write(f'"{sc}" ' + " ".join(cells) + "\n")
    plots = ", ".join(
        f"'throughput.dat' using {i + 2}:xtic(1) title columnheader({i + 2})" for i in range(len(servers)))
    with open(os.path.join(out, "throughput.gp"), "w") as f:
        f.write(f"""set terminal pngcairo size 1100,650 font "sans,10"
set output 'throughput.png'
set title "Messages per second by scenario (higher is better){' — log scale' if log else ''}\\n{title_tail}"
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top right
set grid ytics
set ylabel "per second (round trips, deliveries, churn cycles)"
set format y "%.0s%c"
{'set logscale y' if log else 'set yrange [0:*]'}
plot {plots}
""")

    if idle_scen:
        sc = idle_scen[0]
        with open(os.path.join(out, "memory.dat"), "w") as f:
            for sv in servers:
                v = per_conn(sc, sv)
                f.write(f'"{LABELS.get(sv, sv)}" {v:.2f}\n' if v is not None else f'"{LABELS.get(sv, sv)}" ?\n')
        with open(os.path.join(out, "memory.gp"), "w") as f:
            f.write(f"""set terminal pngcairo size 900,550 font "sans,10"
set output 'memory.png'
set title "Server RSS per idle joined connection, {sc.split('-', 1)[-1]} connections (lower is better)\\n{title_tail}"
set datafile missing "?"
set style data histograms
set style fill solid 0.85 border -1
set boxwidth 0.6
set key off
set grid ytics
set ylabel "KiB per connection"
set yrange [0:*]
set xtics rotate by -15
plot 'memory.dat' using 2:xtic(1) lc rgb "#4472c4", '' using 0:2:(sprintf("%.1f", $2)) with labels offset 0,1 notitle
""")


if __name__ == "__main__":
    main()
