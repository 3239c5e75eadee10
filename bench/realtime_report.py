#!/usr/bin/env python3
"""Helpers for bench/realtime.sh. Standard library only.

  verdict RESULTS_JSONL [SCENARIO]   "keeps up" or "does not keep up: <why>"
                                     for a scenario's result (default: the
                                     last one recorded)
  disturbed RESULTS_JSONL            "yes <seconds>" if other processes took
                                     more than DISTURBED_S of CPU during the
                                     last recorded run, else "no"
  supersede RESULTS_JSONL            mark the last recorded run superseded
                                     (it is repeated; the report lists it
                                     only under errors)
  report RESULTS_JSONL META_TSV COMMANDS_TXT
                                     the Markdown report

RESULTS_JSONL has one object per scenario run: scenario, server, protocol,
subscribers, rate, status, reason, load (the load generator's JSON line, or null),
rss_kb, hwm_kb, server_cpu_s, client_wall_s, server_log_errors.
"""

import json
import sys

# A scenario "keeps up" when every subscriber connected and stayed, every
# write succeeded on schedule, every event arrived, and the last write's
# events arrived within this many seconds (no backlog left at the end).
MAX_DRAIN_S = 1.0

NAMES = {"basalt": "Basalt", "pocketbase": "PocketBase"}

# CPU seconds used by other processes during a run above which the run
# counts as disturbed (clean runs here: at most ~0.6 s, with 10,000
# connections).
DISTURBED_S = 2.0


def load_results(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def verdict(r):
    """(keeps_up, reasons)"""
    if r.get("status") != "ok":
        return False, [r.get("reason") or "failed"]
    l = r.get("load") or {}
    why = []
    if l.get("subscribers_connected") != l.get("subscribers_requested"):
        why.append(f"{l.get('subscribers_connected')} of {l.get('subscribers_requested')} subscribed")
    if l.get("write_errors") or l.get("writes_not_sent"):
        why.append(f"{l.get('write_errors')} write errors, {l.get('writes_not_sent')} writes not sent")
    if l.get("events_missing"):
        why.append(f"{l['events_missing']:,} events missing")
    if l.get("disconnects"):
        why.append(f"{l['disconnects']} disconnects")
    if l.get("resyncs"):
        why.append(f"{l['resyncs']} resyncs")
    if (l.get("drain_s") or 0) > MAX_DRAIN_S:
        why.append(f"last events {l['drain_s']:.1f} s after the last write (backlog)")
    if l.get("write_rate") and l.get("rate") and l["write_rate"] < 0.95 * l["rate"]:
        why.append(f"writes reached only {l['write_rate']:.0f}/s")
    return not why, why


def cmd_disturbed(path):
    rows = load_results(path)
    other = other_cpu(rows[-1]) if rows else None
    print(f"yes {other:.1f}" if other is not None and other > DISTURBED_S else "no")


def cmd_supersede(path):
    rows = load_results(path)
    if rows:
        rows[-1]["superseded"] = True
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def cmd_verdict(path, scenario=None):
    rows = [r for r in load_results(path)
            if (scenario is None or r["scenario"] == scenario) and not r.get("superseded")]
    if not rows:
        print("does not keep up: no result")
        return
    ok, why = verdict(rows[-1])
    print("keeps up" if ok else "does not keep up: " + "; ".join(why))


def other_cpu(r):
    """CPU seconds used by neither the server nor the load generator during
    the run (builds, other benchmarks on the shared machine)."""
    l = r.get("load") or {}
    if r.get("machine_cpu_s") is None or r.get("server_cpu_s") is None or l.get("client_cpu_total_s") is None:
        return None
    return (r["machine_cpu_s"] - r["server_cpu_s"] - l["client_cpu_total_s"]
            - (r.get("ksoftirqd_cpu_s") or 0))


def ksoft(r):
    k = r.get("ksoftirqd_cpu_s")
    return f" (+{k:.1f} s ksoftirqd)" if k and k >= 0.05 else ""


def _n(x, digits=0):
    return "–" if x is None else f"{x:,.{digits}f}"


def _ms(x):
    return "–" if x is None else (f"{x:,.1f} ms" if x >= 100 else f"{x:.2f} ms")


def _mib(kb):
    return "–" if kb is None else f"{kb / 1024:,.0f} MiB"


def _ratio(a, b):
    if a is None or b is None or not b:
        return "–"
    x = a / b
    # Two significant digits below 0.1, so 0.0014× does not print as 0.00×.
    return f"{x:.2f}×" if x >= 0.1 else f"{x:.2g}×"


# The run's default write rate; rows with another rate say theirs.
DEFAULT_RATE = None


def rate_of(r):
    return r.get("rate") if r.get("rate") is not None else (r.get("load") or {}).get("rate")


def label(r):
    out = f"{NAMES.get(r['server'], r['server'])} {r['protocol'].upper()}, {r['subscribers']:,} subscribers"
    rate = rate_of(r)
    if rate is not None and DEFAULT_RATE is not None and float(rate) != float(DEFAULT_RATE):
        out += f", {float(rate):g} write{'s' if float(rate) != 1 else ''}/s"
    return out


def cmd_report(results_path, meta_path, commands_path):
    everything = load_results(results_path)
    results = [r for r in everything if not r.get("superseded")]
    meta = {}
    with open(meta_path) as f:
        for line in f:
            if "\t" in line:
                k, v = line.rstrip("\n").split("\t", 1)
                meta[k] = v
    with open(commands_path) as f:
        commands = [c.rstrip("\n") for c in f if c.strip()]
    global DEFAULT_RATE
    DEFAULT_RATE = meta.get("rate")

    out = []
    w = out.append
    rate, secs = meta.get("rate", "?"), meta.get("seconds", "?")
    w("# Realtime benchmark — Basalt vs PocketBase")
    w("")
    w(f"- Date: {meta.get('date', '?')}")
    w(f"- Machine: {meta.get('nproc', '?')} CPUs (`nproc`), {meta.get('cpu', '?')}, {meta.get('ram', '?')} RAM, "
      f"Linux {meta.get('kernel', '?')}; data dirs on {meta.get('fs', '?')}; `ulimit -n` {meta.get('nofile', '?')}")
    w(f"- Basalt: {meta.get('basalt_version', '?')}")
    if meta.get("pocketbase_version"):
        w(f"- PocketBase: {meta['pocketbase_version']}")
    w(f"- Load generator: {meta.get('load_version', '?')}, `{meta.get('load_args', '')}`; "
      "**it runs on the same machine and shares the cores with the server** (its CPU time is in the "
      "details table)")
    w(f"- Each scenario: a fresh server on 127.0.0.1 with a public `posts` collection; N subscribers to "
      f"`posts/*` (connected in batches), then {rate} creates/s for {secs} s (open loop) and the "
      "delivery latency of every event")
    w("")
    w("## Results")
    w("")
    w("| Scenario | subscribers connected | writes | events expected | received | delivered ev/s "
      "| p50 | p99 | max | RSS (peak) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        l = r.get("load")
        if not l:
            w(f"| {label(r)} | failed: {r.get('reason', '?')} | | | | | | | | {_mib(r.get('hwm_kb'))} |")
            continue
        lat = l.get("latency_ms") or {}
        writes = f"{l['writes_ok']:,}"
        if l.get("writes_ok") != l.get("writes_planned"):
            writes += f" of {l['writes_planned']:,} ok"
        if l.get("writes_committed") is not None and l["writes_committed"] != l.get("writes_ok"):
            writes += f", {l['writes_committed']:,} committed"
        w(f"| {label(r)} | {l['subscribers_connected']:,} | {writes} | {l['events_expected']:,} "
          f"| {l['events_received']:,} | {_n(l.get('delivered_per_s'))} | {_ms(lat.get('p50'))} "
          f"| {_ms(lat.get('p99'))} | {_ms(lat.get('max'))} | {_mib(r.get('hwm_kb'))} |")
    w("")
    w("## Details")
    w("")
    w("| Scenario | p90 | create p50 / p99 | write rate | last event after last write | disconnects "
      "| resyncs | seq gaps / dups | connect failures | client CPU | server CPU | other CPU | VmRSS after | verdict |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        l = r.get("load")
        ok, why = verdict(r)
        v = "keeps up" if ok else "does not keep up: " + "; ".join(why)
        if not l:
            w(f"| {label(r)} | | | | | | | | | | {_n(r.get('server_cpu_s'), 1)} s | | {_mib(r.get('rss_kb'))} | {v} |")
            continue
        lat = l.get("latency_ms") or {}
        gaps = f"{l['seq_gaps']:,} / {l['seq_dups']:,}" if l["protocol"] == "ws" else "n/a"
        resyncs = f"{l['resyncs']:,}" if l["protocol"] == "ws" else "n/a"
        w(f"| {label(r)} | {_ms(lat.get('p90'))} | {_ms(l.get('create_p50_ms'))} / {_ms(l.get('create_p99_ms'))} "
          f"| {_n(l.get('write_rate'), 1)}/s | {_n(l.get('drain_s'), 2)} s | {l['disconnects']:,} | {resyncs} "
          f"| {gaps} | {l['connect_failures']:,} | {_n(l.get('client_cpu_s'), 1)} s of "
          f"{_n(l.get('client_cpu_window_s'), 1)} s | {_n(r.get('server_cpu_s'), 1)} s of {_n(r.get('client_wall_s'), 1)} s "
          f"| {_n(other_cpu(r), 1)} s{ksoft(r)} | {_mib(r.get('rss_kb'))} | {v} |")

    # Ratios: each Basalt row against PocketBase SSE with the same N and rate.
    def key(r):
        return (r["subscribers"], float(rate_of(r) or 0))
    pb = {key(r): r for r in results if r["server"] == "pocketbase" and r.get("load")}
    pairs = [(r, pb[key(r)]) for r in results
             if r["server"] == "basalt" and r.get("load") and key(r) in pb]
    if pairs:
        w("")
        w("## Ratios (Basalt / PocketBase SSE, same number of subscribers and write rate)")
        w("")
        w("Delivered events/s above 1 means Basalt delivers more; latency, memory and CPU below 1 mean "
          "Basalt is better.")
        w("")
        w("| Basalt row / PocketBase row | delivered ev/s | p50 | p99 | max | RSS (peak) | server CPU |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for b, p in pairs:
            bl, pl = b["load"], p["load"]
            bt, pt = bl.get("latency_ms") or {}, pl.get("latency_ms") or {}
            w(f"| {label(b)} / {label(p)} | {_ratio(bl.get('delivered_per_s'), pl.get('delivered_per_s'))} "
              f"| {_ratio(bt.get('p50'), pt.get('p50'))} | {_ratio(bt.get('p99'), pt.get('p99'))} "
              f"| {_ratio(bt.get('max'), pt.get('max'))} | {_ratio(b.get('hwm_kb'), p.get('hwm_kb'))} "
              f"| {_ratio(b.get('server_cpu_s'), p.get('server_cpu_s'))} |")

    # Largest N that kept up, per server and protocol, when a big one did not.
    groups = {}
    for r in results:
        groups.setdefault((r["server"], r["protocol"], float(rate_of(r) or 0)), []).append(r)
    lines = []
    for (server, proto, grate), rows in groups.items():
        if len(rows) < 2:
            continue
        kept = [r["subscribers"] for r in rows if verdict(r)[0]]
        failed = [r["subscribers"] for r in rows if not verdict(r)[0]]
        if failed:
            best = max(kept) if kept else None
            lines.append(f"- {NAMES.get(server, server)} {proto.upper()} at {grate:g} writes/s: did not keep up with "
                         f"{', '.join(f'{n:,}' for n in sorted(failed))} subscribers; largest that kept up: "
                         f"{f'{best:,}' if best else 'none of those tried'}.")
    if lines:
        w("")
        w("## Largest number of subscribers that kept up")
        w("")
        w(f"\"Keeps up\": every subscriber connected and stayed, every write on schedule, every event "
          f"delivered, and the last write's events delivered within {MAX_DRAIN_S:.0f} s (no backlog).")
        w("")
        out.extend(lines)

    errs = []
    for r in results:
        l = r.get("load") or {}
        e = l.get("errors") or {}
        items = [f"{k}: {m}" for k in ("setup", "disconnect", "write", "other") for m in e.get(k, [])]
        if r.get("status") != "ok":
            items.insert(0, f"status: {r.get('reason')}")
        if l and l.get("events_received", 0) > l.get("events_expected", 0):
            items.append(f"{l['events_received'] - l['events_expected']:,} events more than expected "
                         "(duplicates, or writes committed after the count settled)")
        busy = r.get("busy_before_pct")
        if busy is not None and busy >= 15:
            items.append(f"the machine was {busy}% busy (other processes) just before this run")
        other = other_cpu(r)
        if other is not None and other > DISTURBED_S:
            items.append(f"{other:.1f} s of CPU went to other processes during this run "
                         "(machine busy time − server − load generator − ksoftirqd): figures disturbed")
        if r.get("server_log_errors"):
            items.append(f"{r['server_log_errors']} server log lines match panic|error")
        if items:
            errs.append(f"- {label(r)}:")
            errs.extend(f"  - `{i[:300]}`" for i in items)
    for r in everything:
        if r.get("superseded"):
            errs.append(f"- {label(r)}: a first attempt was disturbed ({other_cpu(r) or 0:.1f} s of CPU went "
                        "to other processes) and was repeated; the tables show the repeat.")
    if errs:
        w("")
        w("## Errors and failures")
        w("")
        w("First messages of each kind, as the load generator and the server logs reported them.")
        w("")
        out.extend(errs)

    w("")
    w("## How to read this")
    w("")
    w("- Latency is the subscriber's receive time (after the frame or SSE message is read) minus "
      "`sent_us`, stamped by the writer when the write was due (one machine, one clock). It includes "
      "the create request itself: Basalt publishes a change after it is durable (fsync, group commit), "
      "PocketBase does not fsync on commit (SQLite WAL, `synchronous=NORMAL`). The `create p50 / p99` "
      "column is the create request's own latency.")
    w("- The writer is open loop: one create every 1/rate s whatever the server's speed, on at most "
      "`--writers` keep-alive connections; a slow server shows up as latency (and, past 10 s of delay, as writes "
      "not sent), not as a lower offered rate.")
    w("- `delivered ev/s` is events received / (last event − first write). `events expected` is "
      "writes committed × subscribers connected when the writes started, where writes committed is the "
      "growth of the collection's `totalItems` (read until it settles): a create that timed out on the "
      "client (30 s) may still have been committed and published. `writes` shows the successful (2xx) "
      "creates, and the committed count where it differs.")
    w("- `RSS (peak)` is VmHWM of the server process, which is fresh for every scenario: the peak with "
      "all subscribers connected and the run's events in flight. `VmRSS after` is read once the load "
      "generator has exited (its connections closed).")
    w("- `client CPU` is the load generator's user+system time from the first write to the end of the "
      "drain (its reader runs on one thread by default); `server CPU` is the server's over the whole "
      "client run including the connection ramp. Both compete for the same cores. `other CPU` is the "
      "machine's busy time over the client run minus both (the load generator's whole-process time) "
      "and minus the `ksoftirqd` kernel threads (loopback network work the kernel defers there, shown "
      "in brackets): anything well above 0 means another process disturbed the run; a run with more "
      f"than {DISTURBED_S:.0f} s is repeated once (`RT_RETRIES`).")
    w("- WebSocket only: `resyncs` counts `{\"type\":\"resync\"}` frames (the load generator then "
      "resubscribes with `since` = the last seq it saw, as a resuming client would); `seq gaps` counts "
      "changes missing between consecutive events of one subscription (Basalt numbers every change and "
      "only the run's creates happen during it), `dups` events whose seq did not increase. Both must be "
      "0 unless there was a resync.")
    w("- SSE: a stream the server closes counts as a disconnect and is not reopened (the SDKs would "
      "reconnect), so the events it missed count as missing.")
    w("- PocketBase's SSE and Basalt's SSE endpoint speak the same protocol (`GET /api/realtime`, "
      "`PB_CONNECT`, `POST /api/realtime`), driven by the same client code.")
    w("")
    w("## Commands")
    w("")
    w("```sh")
    out.extend(commands)
    w("```")
    print("\n".join(out))


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    fn = {"verdict": cmd_verdict, "disturbed": cmd_disturbed, "supersede": cmd_supersede,
          "report": cmd_report}.get(cmd)
    if fn is None:
        sys.exit(f"unknown command {cmd!r}\n{__doc__}")
    fn(*args)


if __name__ == "__main__":
    main(sys.argv)
