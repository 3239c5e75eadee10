#!/usr/bin/env python3
"""Helpers for bench/run.sh. Standard library only.

Subcommands (all print to stdout, errors to stderr, non-zero exit on failure):

  free-port                              a free TCP port on 127.0.0.1
  health BASE                            exit 0 if GET BASE/api/health is 2xx
  token BASE EMAIL PASSWORD              superuser token (auth-with-password)
  post-json URL BODY [TOKEN]             POST a JSON body, print the response
  count BASE COLLECTION                  totalItems of a collection
  ids BASE COLLECTION N OUTFILE          write >= N record ids, one a line,
                                         taken from pages spread over the list
  load BASE COLLECTION N [--concurrency C]
                                         create N records with C threads
                                         (http.client, keep-alive); prints JSON
  probe URL                              GET a list URL once; print a JSON summary
                                         (status, totalItems, items, first id,
                                         nextCursor); exit 2 unless 2xx + list body
  follow-cursor URL PAGE                 from page 1 at URL, follow nextCursor
                                         until PAGE; print the cursor of PAGE as
                                         JSON; exit 3 if there is no nextCursor
  jget JSON KEY                          one top-level value of a JSON object
  json KEY=VALUE... KEY:=RAW...          a JSON object on one line: VALUE as a
                                         string, RAW as JSON (numbers, null)
  wrk-result WRK_OUTPUT_FILE             the BENCH_RESULT JSON from a wrk run
  report RESULTS_JSONL META_TSV COMMANDS_TXT
                                         render the Markdown report
"""

import http.client
import json
import math
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT = 30


def _request(method, url, body=None, token=None):
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = token
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def _get_json(url):
    status, text = _request("GET", url)
    if not 200 <= status < 300:
        sys.exit(f"GET {url} -> {status}: {text[:500]}")
    return json.loads(text)


def cmd_free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def cmd_health(base):
    try:
        status, _ = _request("GET", base + "/api/health")
    except OSError:
        sys.exit(1)
    sys.exit(0 if 200 <= status < 300 else 1)


def cmd_token(base, email, password):
    url = base + "/api/collections/_superusers/auth-with-password"
    status, text = _request("POST", url, {"identity": email, "password": password})
    if not 200 <= status < 300:
        sys.exit(f"POST {url} -> {status}: {text[:500]}")
    print(json.loads(text)["token"])


def cmd_post_json(url, body, token=None):
    json.loads(body)  # fail early on a malformed body
    status, text = _request("POST", url, body, token)
    if not 200 <= status < 300:
        sys.exit(f"POST {url} -> {status}: {text[:1000]}")
    print(text)


def _records_url(base, collection):
    return f"{base}/api/collections/{urllib.parse.quote(collection)}/records"


def cmd_count(base, collection):
    print(_get_json(_records_url(base, collection) + "?page=1&perPage=1")["totalItems"])


def cmd_ids(base, collection, n, outfile):
    n = int(n)
    per_page = 200
    url = _records_url(base, collection)
    first = _get_json(f"{url}?page=1&perPage={per_page}")
    total_pages = max(int(first.get("totalPages") or 1), 1)
    want_pages = min(total_pages, max(1, math.ceil(n / per_page)))
    # Pages spread evenly over the whole list, so the ids cover the data set.
    pages = sorted({1 + (i * (total_pages - 1)) // max(want_pages - 1, 1)
                    for i in range(want_pages)})
    ids = []
    for p in pages:
        page = first if p == 1 else _get_json(f"{url}?page={p}&perPage={per_page}")
        ids.extend(item["id"] for item in page["items"])
    # Top up from following pages if spreading left us short (e.g. last page).
    p = 2
    while len(ids) < n and p <= total_pages:
        if p not in pages:
            ids.extend(i["id"] for i in _get_json(f"{url}?page={p}&perPage={per_page}")["items"])
        p += 1
    ids = list(dict.fromkeys(ids))
    if len(ids) < min(n, int(first.get("totalItems") or 0)):
        sys.exit(f"only found {len(ids)} ids, wanted {n}")
    random.Random(42).shuffle(ids)
    ids = ids[:n]
    with open(outfile, "w") as f:
        f.write("\n".join(ids) + "\n")
    print(len(ids))


def cmd_load(base, collection, n, concurrency=8):
    """Create n records with `concurrency` threads, each on one keep-alive
    http.client connection. Prints {"created","errors","seconds","rate"}."""
    n, concurrency = int(n), int(concurrency)
    u = urllib.parse.urlsplit(_records_url(base, collection))
    path = u.path
    counter = iter(range(n))
    lock = threading.Lock()
    stats = {"created": 0, "errors": 0, "last_error": ""}

    def take():
        with lock:
            return next(counter, None)

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
        rnd = random.Random()
        created = errors = 0
        while True:
            i = take()
            if i is None:
                break
            body = json.dumps({"title": f"hello {i}", "views": rnd.randint(0, 1000),
                               "body": "lorem ipsum dolor sit amet"})
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                text = resp.read()
                if 200 <= resp.status < 300:
                    created += 1
                else:
                    errors += 1
                    stats["last_error"] = f"{resp.status}: {text[:200]!r}"
            except (OSError, http.client.HTTPException) as e:
                errors += 1
                stats["last_error"] = repr(e)
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
        conn.close()
        with lock:
            stats["created"] += created
            stats["errors"] += errors

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(max(1, concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    out = {"created": stats["created"], "errors": stats["errors"], "seconds": round(secs, 3),
           "rate": round(stats["created"] / secs, 1) if secs > 0 else 0}
    if stats["last_error"]:
        out["last_error"] = stats["last_error"]
    print(json.dumps(out))


def _summary(status, text):
    """(ok, summary dict) for one list response."""
    out = {"status": status}
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if 200 <= status < 300 and isinstance(body, dict) and isinstance(body.get("items"), list):
        items = body["items"]
        out.update(total_items=body.get("totalItems"), total_pages=body.get("totalPages"),
                   items=len(items), first_id=items[0].get("id") if items else None,
                   has_next_cursor="nextCursor" in body)
        if "nextCursor" in body:
            out["next_cursor"] = body["nextCursor"]
        return True, out
    msg = body.get("message") if isinstance(body, dict) and body.get("message") else text[:300]
    out["error"] = f"HTTP {status}: {msg}"
    return False, out


def cmd_probe(url):
    try:
        status, text = _request("GET", url)
    except OSError as e:
        print(json.dumps({"error": f"GET failed: {getattr(e, 'reason', e)}"}))
        sys.exit(2)
    ok, out = _summary(status, text)
    print(json.dumps(out))
    if not ok:
        sys.exit(2)


def cmd_follow_cursor(url, page):
    """GET url (page 1), then follow nextCursor (`&cursor=<urlencoded>`) until
    page PAGE is reached, on one keep-alive connection. Prints
    {"cursor","page","hops","seconds","first_id","items"}: the cursor whose
    page is PAGE. Exit 3 (printing {"skipped": ...}) if page 1 has no
    nextCursor field; exit 1 if the cursor runs out or a request fails."""
    page = int(page)
    u = urllib.parse.urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    sep = "&" if u.query else "?"
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)

    def get(p):
        try:
            conn.request("GET", p, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as e:
            print(json.dumps({"error": f"GET {p[:200]} failed: {e!r}"}))
            sys.exit(1)
        ok, summ = _summary(resp.status, text)
        if not ok:
            print(json.dumps({"error": f"GET {p[:200]}: {summ['error']}"}))
            sys.exit(1)
        return json.loads(text), summ

    t0 = time.monotonic()
    body, summ = get(path)
    if "nextCursor" not in body:
        print(json.dumps({"skipped": "no nextCursor"}))
        sys.exit(3)
    cursor = None
    for hop in range(1, page):
        cursor = body.get("nextCursor")
        if not cursor:
            print(json.dumps({"error": f"nextCursor ran out on page {hop} (wanted page {page})"}))
            sys.exit(1)
        body, summ = get(path + sep + "cursor=" + urllib.parse.quote(str(cursor), safe=""))
    conn.close()
    print(json.dumps({"cursor": cursor, "page": page, "hops": page - 1,
                      "seconds": round(time.monotonic() - t0, 2),
                      "first_id": summ["first_id"], "items": summ["items"]}))


def cmd_jget(text, key):
    v = json.loads(text).get(key)
    print("" if v is None else (json.dumps(v) if isinstance(v, (dict, list, bool)) else v))


def cmd_json(*pairs):
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep:
            sys.exit(f"json: expected KEY=VALUE or KEY:=RAW, got {p!r}")
        if k.endswith(":"):
            out[k[:-1]] = json.loads(v)
        else:
            out[k] = v
    print(json.dumps(out, ensure_ascii=False))


def cmd_wrk_result(path):
    with open(path) as f:
        for line in f:
            if line.startswith("BENCH_RESULT "):
                print(line[len("BENCH_RESULT "):].strip())
                return
    sys.exit(f"no BENCH_RESULT line in {path}")


# --------------------------------------------------------------------------
# Report

SERVERS = [("basalt", "Basalt"), ("pocketbase", "PocketBase")]
# Record kinds that make a row in the throughput table.
ROW_KINDS = ("wrk", "skipped", "failed", "na")
# Ratio against another PocketBase workload when PocketBase has no row of its own.
COMPARE_WITH = {"deep-page-cursor": "deep-page-offset"}


def _ms(us):
    return "–" if us is None else f"{us / 1000:.2f} ms"


def _num(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def _mib(kb):
    return "–" if kb is None else f"{kb / 1024:,.1f} MiB"


def _ratio(a, b):
    if a is None or b is None or not b:
        return "–"
    return f"{a / b:.2f}×"


def cmd_report(results_path, meta_path, commands_path):
    results = []
    with open(results_path) as f:
        for line in f:
            line = line.strip()
            if line:
                results.append(json.loads(line))
    meta = {}
    with open(meta_path) as f:
        for line in f:
            if "\t" in line:
                k, v = line.rstrip("\n").split("\t", 1)
                meta[k] = v
    with open(commands_path) as f:
        commands = [c.rstrip("\n") for c in f if c.strip()]

    by = {}  # (server, workload) -> record (wrk, preload, rss, _status, skipped, failed, na)
    probes = {}  # (server, workload) -> the single GET made before the wrk run
    order = []  # workload rows in the order they were first run
    for r in results:
        if r.get("kind") == "probe":
            probes[(r["server"], r["workload"])] = r
        else:
            by[(r["server"], r["workload"])] = r
        if r.get("kind") in ROW_KINDS and r["workload"] not in order:
            order.append(r["workload"])

    def get(server, workload, key):
        return by.get((server, workload), {}).get(key)

    def version(server):
        v = meta.get(server + "_version", "?")
        if v.startswith("skipped"):
            return v
        r = by.get((server, "_status"))
        return f"{v} — {r['status'] if r else 'not run'}"

    def absent(server, workload=None):
        # Why a server has no figure: the workload said why (skipped, failed,
        # not applicable), or the server was skipped by the user or failed.
        r = by.get((server, workload))
        if r and r.get("kind") in ("skipped", "failed", "na"):
            return {"skipped": "skipped: ", "failed": "failed: ", "na": "n/a: "}[r["kind"]] + r["reason"]
        r = by.get((server, "_status"))
        if r and r["status"] != "ok":
            return "failed"
        return "skipped" if meta.get(server + "_version", "").startswith("skipped") else "–"

    out = []
    w = out.append
    w(f"# Basalt vs PocketBase — {meta.get('tag', 'foundation')} benchmark")
    w("")
    w(f"- Date: {meta.get('date', '?')}")
    w(f"- Machine: {meta.get('nproc', '?')} CPUs (`nproc`), {meta.get('cpu', '?')}, "
      f"{meta.get('ram', '?')} RAM, Linux {meta.get('kernel', '?')}")
    w(f"- Basalt: {version('basalt')}")
    w(f"- PocketBase: {version('pocketbase')}")
    warmup = meta.get("warmup", "0")
    warm = ("no warm-up" if warmup.rstrip("sm") in ("", "0")
            else f"read workloads after a {warmup} warm-up that is not counted")
    w(f"- Load generator: {meta.get('wrk_version', 'wrk')}, `{meta.get('wrk_args', '')}` "
      f"({warm}); client and server share the same machine and cores")
    w(f"- Servers run one at a time, each on a fresh data directory ({meta.get('fs', '?')} "
      "file system), bound to 127.0.0.1")
    w("")
    w("## Throughput and latency")
    w("")
    w("| Workload | Server | req/s | p50 | p99 | non-2xx | socket errors | requests |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    for wl in order:
        for key, name in SERVERS:
            r = by.get((key, wl))
            if r is None or r.get("kind") != "wrk":
                w(f"| {wl} | {name} | {absent(key, wl)} | | | | | |")
                continue
            sock = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
            w(f"| {wl} | {name} | {_num(r['rps'])} | {_ms(r['p50_us'])} | {_ms(r['p99_us'])} "
              f"| {r['non2xx']} | {sock} | {_num(r['requests'])} |")
    if probes:
        w("")
        w("## Query checks")
        w("")
        w("One GET of each URL before its wrk run (not timed). `totalItems` is what the "
          "server reported (-1 with `skipTotal`); the data are random, so the counts differ "
          "between the servers, but both must be > 0 where a count is asked for.")
        w("")
        w("| Workload | Server | request | totalItems | items on page | note |")
        w("|---|---|---|---:|---:|---|")
        for wl in order:
            for key, name in SERVERS:
                pr = probes.get((key, wl))
                if pr is None:
                    continue
                ti = pr.get("total_items")
                w(f"| {wl} | {name} | `{pr.get('url', '?')}` | {'–' if ti is None else f'{ti:,}'} "
                  f"| {pr.get('items', '–')} | {pr.get('note', '')} |")
    w("")
    w("## Data set and memory")
    w("")
    w("| Server | preload | preload time | preload rate | records at read time "
      "| VmRSS after reads | VmHWM (peak) | data dir on disk |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    for key, name in SERVERS:
        p = by.get((key, "preload"), {})
        m = by.get((key, "memory"), {})
        if not p and not m:
            w(f"| {name} | {absent(key)} | | | | | | |")
            continue
        created = p.get("created")
        if not p:
            what, secs, rate = "not run", "–", "–"
        elif not created:
            what, secs, rate = "none needed (create reached the target)", "–", "–"
        else:
            how = p.get("method", "?")
            if p.get("topped_up"):
                how += f" + {p['topped_up']:,} via python"
            what = f"{created:,} records ({how})"
            secs = f"{p['seconds']:.1f} s"
            rate = f"{_num(p.get('rate'))} rec/s"
        w(f"| {name} | {what} | {secs} | {rate} | {_num(m.get('records'))} "
          f"| {_mib(m.get('rss_kb'))} | {_mib(m.get('hwm_kb'))} | {_mib(m.get('disk_kb'))} |")
    w("")
    w("## Ratios (Basalt / PocketBase)")
    w("")
    w("req/s above 1 means Basalt is faster; latency, time and memory below 1 mean Basalt "
      "is better.")
    w("")
    w("| Workload | req/s | p50 | p99 |")
    w("|---|---:|---:|---:|")
    for wl in order:
        pb_wl, label = wl, wl
        if get("pocketbase", wl, "kind") != "wrk" and wl in COMPARE_WITH:
            # No PocketBase equivalent of its own: compare with the stated one.
            pb_wl = COMPARE_WITH[wl]
            label = f"{wl} (PocketBase: {pb_wl})"
        w(f"| {label} | {_ratio(get('basalt', wl, 'rps'), get('pocketbase', pb_wl, 'rps'))} "
          f"| {_ratio(get('basalt', wl, 'p50_us'), get('pocketbase', pb_wl, 'p50_us'))} "
          f"| {_ratio(get('basalt', wl, 'p99_us'), get('pocketbase', pb_wl, 'p99_us'))} |")
    w("")
    w("| Measure | Basalt / PocketBase |")
    w("|---|---:|")
    w(f"| preload rate (rec/s) | {_ratio(get('basalt', 'preload', 'rate'), get('pocketbase', 'preload', 'rate'))} |")
    w(f"| VmRSS after reads | {_ratio(get('basalt', 'memory', 'rss_kb'), get('pocketbase', 'memory', 'rss_kb'))} |")
    w(f"| VmHWM (peak RSS) | {_ratio(get('basalt', 'memory', 'hwm_kb'), get('pocketbase', 'memory', 'hwm_kb'))} |")
    w(f"| data dir on disk | {_ratio(get('basalt', 'memory', 'disk_kb'), get('pocketbase', 'memory', 'disk_kb'))} |")
    w("")
    w("## Notes")
    w("")
    w("- Durability differs: Basalt fsyncs every write before answering (group commit); "
      "PocketBase runs SQLite in WAL mode with `synchronous=NORMAL`, which does not fsync "
      "on each commit. Write figures are therefore not like for like: Basalt pays for "
      "stronger durability.")
    w("- `non-2xx` is wrk's count of responses with status ≥ 400 (wrk counts 3xx as "
      "success; none of these endpoints redirect). It must be 0 for a figure to count.")
    if "create" in order:
        w("- `create` writes records before the preload, so the preload only adds what is "
          "missing to reach the target; `records at read time` is the size of the collection "
          "during the read workloads.")
    if "get-by-id" in order:
        w(f"- `get-by-id` cycles over {meta.get('ids', '?')} ids taken from pages spread over "
          "the whole collection.")
    if "list" in order:
        w("- `list` is `?page=1&perPage=30` with each server's default sort "
          "(PocketBase also counts `totalItems` on every request).")
    if meta.get("indexes"):
        w(f"- Secondary index, created with the collection (before the preload): {meta['indexes']}")
    if any(wl in order for wl in ("query-count", "query-skiptotal")):
        w("- `query-count` is `?filter=views%3D42&sort=-created&perPage=30` (equality on the "
          "indexed field, sorted, with the total count); `query-skiptotal` is the same with "
          "`&skipTotal=1` (no count).")
    if any(wl.startswith("deep-page") for wl in order):
        w(f"- Deep pages (`sort=-created&perPage=30`): `deep-page-first` is page 1; "
          f"`deep-page-offset` is `page={meta.get('deep_page', '?')}` (offset paging, both "
          "servers); `deep-page-cursor` is the same position reached with Basalt's keyset "
          "cursor (`&cursor=`, found by following `nextCursor` from page 1, not timed) and is "
          "compared with PocketBase's offset page, PocketBase having no cursor. PocketBase has "
          "no index on `created` alone, so it sorts for every `sort=-created` request; Basalt "
          "reads its `created` index.")
    # wrk runs whose duration or timeout differ from the common arguments.
    wrk_runs = [by[(k, wl)] for wl in order for k, _ in SERVERS
                if by.get((k, wl), {}).get("kind") == "wrk"]
    own = {}
    for r in wrk_runs:
        for key, flag in (("duration", "-d"), ("timeout", "--timeout ")):
            common = meta.get("wrk_args", "")
            if r.get(key) and f"{flag}{r[key]} " not in common + " ":
                own.setdefault(r["workload"], set()).add(f"`{flag}{r[key]}`")
    if own:
        w("- Own wrk arguments (`BENCH_DURATION_<WORKLOAD>`, `BENCH_WRK_TIMEOUT_<WORKLOAD>`): "
          + "; ".join(f"{wl} {' '.join(sorted(v))}" for wl, v in own.items()) + ".")
    # A run that completed few requests per connection gives little to go on
    # (wrk only counts responses that arrive before -d ends).
    conns = int(meta.get("connections") or 0)
    few = [f"{r['workload']} ({dict(SERVERS)[r['server']]}: {r['requests']:,})"
           for r in wrk_runs if conns and r["requests"] < 10 * conns]
    if few:
        w(f"- **Few requests**: fewer than 10 per connection ({10 * conns:,}) in "
          + ", ".join(few) + ". Each connection waited long for its responses; "
          "rerun those with a longer `BENCH_DURATION_<WORKLOAD>` before quoting them.")
    w("- Before each timed run the harness waits until the server is idle (under 10 % of "
      "a core), so requests left in flight by the warm-up or the previous run are not "
      "counted against it.")
    w("- VmRSS/VmHWM come from `/proc/<pid>/status` of the server process after the read "
      "workloads.")
    if meta.get("note"):
        w(f"- {meta['note']}")
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
    if cmd == "load" and "--concurrency" in args:
        i = args.index("--concurrency")
        conc = args[i + 1]
        args = args[:i] + args[i + 2:] + [conc]
    fn = {
        "free-port": cmd_free_port,
        "health": cmd_health,
        "token": cmd_token,
        "post-json": cmd_post_json,
        "count": cmd_count,
        "ids": cmd_ids,
        "load": cmd_load,
        "probe": cmd_probe,
        "follow-cursor": cmd_follow_cursor,
        "jget": cmd_jget,
        "json": cmd_json,
        "wrk-result": cmd_wrk_result,
        "report": cmd_report,
    }.get(cmd)
    if fn is None:
        sys.exit(f"unknown command {cmd!r}\n{__doc__}")
    fn(*args)


if __name__ == "__main__":
    main(sys.argv)
