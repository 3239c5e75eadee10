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
  request METHOD URL [BODY] [TOKEN]      one request; print the body; exit 1
                                         unless 2xx (e.g. PATCH /api/settings)
  auth-data BASE TOKEN OUTDIR USERS PER_USER PAIRS [--concurrency C]
                                         the auth data set (BENCH_TAG=auth): USERS
                                         users, each logged in once, PER_USER notes
                                         each in `notes` and `public_notes` (same
                                         ids); writes creds.txt, tokens.txt,
                                         pairs.txt, note-ids.txt; prints JSON timings
  auth-check BASE PAIRS_FILE             the rules answer as meant: owner 200, other
                                         user and guest refused on `notes`, guest
                                         200 on `public_notes`; prints JSON; exit 2
                                         if not
  dashboard-cookie BASE EMAIL PASSWORD   log in through Basalt's dashboard form;
                                         print the `Cookie` header value of the session
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


def cmd_count(base, collection, token=None):
    url = _records_url(base, collection) + "?page=1&perPage=1"
    status, text = _request("GET", url, token=token)
    if not 200 <= status < 300:
        sys.exit(f"GET {url} -> {status}: {text[:500]}")
    print(json.loads(text)["totalItems"])


def cmd_request(method, url, body=None, token=None):
    if body:
        json.loads(body)  # fail early on a malformed body
    status, text = _request(method, url, body or None, token or None)
    if not 200 <= status < 300:
        sys.exit(f"{method} {url} -> {status}: {text[:1000]}")
    print(text)


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


# --------------------------------------------------------------------------
# Auth data set (BENCH_TAG=auth)


class _Conn:
    """One keep-alive http.client connection; reconnects after an error."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def call(self, method, path, body=None, token=None):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = token
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
            try:
                self.conn.request(method, path, data, headers)
                resp = self.conn.getresponse()
                text = resp.read().decode(errors="replace")
                break
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return resp.status, parsed, text

    def close(self):
        if self.conn is not None:
            self.conn.close()


def _parallel(base, items, fn, concurrency):
    """fn(conn, item) -> result for every item, on `concurrency` threads with
    one keep-alive connection each. Returns (results in item order, seconds,
    errors, last error); a result of None is an error, fn may raise too."""
    results = [None] * len(items)
    counter = iter(range(len(items)))
    lock = threading.Lock()
    stats = {"errors": 0, "last_error": ""}

    def worker():
        conn = _Conn(base)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            try:
                results[i] = fn(conn, items[i])
            except Exception as e:  # recorded, the run goes on
                results[i] = None
                with lock:
                    stats["last_error"] = repr(e)[:300]
            if results[i] is None:
                with lock:
                    stats["errors"] += 1
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(max(1, int(concurrency)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.monotonic() - t0, stats["errors"], stats["last_error"]


def _check(status, parsed, text, what):
    if not 200 <= status < 300:
        msg = parsed.get("message") if isinstance(parsed, dict) else text[:200]
        raise RuntimeError(f"{what}: HTTP {status}: {msg} {text[:300]}")
    return parsed


def _record_ids(n, seed=42):
    """n distinct record ids of PocketBase's default shape (15 of a-z0-9;
    Basalt accepts them too), random but reproducible."""
    rnd = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    out, seen = [], set()
    while len(out) < n:
        s = "".join(rnd.choice(alphabet) for _ in range(15))
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def cmd_auth_data(base, token, outdir, users, per_user, pairs, concurrency=8):
    """Builds the auth data set on a server whose `notes` and `public_notes`
    collections exist (see run.sh): creates `users` users (as superuser),
    logs each in once (their tokens for get-auth-rule), then `per_user` notes
    per user in `notes` and the same records (same ids) in `public_notes`.
    Writes OUTDIR/creds.txt (identity,password: login.lua),
    OUTDIR/tokens.txt (userId,token), OUTDIR/pairs.txt (token,noteId:
    get_auth.lua; `pairs` notes drawn at random over all of them) and
    OUTDIR/note-ids.txt (the same note ids: get.lua on public_notes).
    Prints JSON with the count and duration of each step."""
    users, per_user, pairs = int(users), int(per_user), int(pairs)
    out = {"users": users, "per_user": per_user, "concurrency": int(concurrency)}

    def log(msg):
        print(f"[auth-data] {msg}", file=sys.stderr, flush=True)

    def fail(step, errors, last):
        out["error"] = f"{step}: {errors} errors; last: {last}"
        print(json.dumps(out))
        sys.exit(1)

    # 1. users
    creds = [(f"user{i:05d}@bench.example.com", f"bench-pw-{i:05d}") for i in range(users)]
    users_path = "/api/collections/users/records"

    def create_user(conn, cred):
        email, pw = cred
        st, body, text = conn.call("POST", users_path, {"email": email, "password": pw,
                                                        "passwordConfirm": pw}, token)
        return _check(st, body, text, f"create {email}")["id"]

    log(f"creating {users} users ({concurrency} threads)")
    ids, secs, errors, last = _parallel(base, creds, create_user, concurrency)
    out.update(users_s=round(secs, 2), users_rate=round(users / secs, 1))
    if errors:
        fail("users", errors, last)
    log(f"{users} users in {secs:.1f}s ({users / secs:.1f}/s)")

    # 2. one login per user (not timed by wrk: gives the tokens)
    login_path = "/api/collections/users/auth-with-password"

    def login(conn, cred):
        email, pw = cred
        st, body, text = conn.call("POST", login_path, {"identity": email, "password": pw})
        body = _check(st, body, text, f"login {email}")
        return body["record"]["id"], body["token"]

    log(f"logging in {users} users once ({concurrency} threads)")
    logins, secs, errors, last = _parallel(base, creds, login, concurrency)
    out.update(logins_s=round(secs, 2), logins_rate=round(users / secs, 1))
    if errors:
        fail("logins", errors, last)
    if [uid for uid, _ in logins] != ids:
        fail("logins", 1, "login returned another record id than the create")
    log(f"{users} logins in {secs:.1f}s ({users / secs:.1f}/s)")

    # 3. notes, then the same records in public_notes
    note_ids = _record_ids(users * per_user)
    notes = [(note_ids[u * per_user + k], ids[u], f"note {k} of user {u}")
             for u in range(users) for k in range(per_user)]
    for coll in ("notes", "public_notes"):
        path = f"/api/collections/{coll}/records"

        def create_note(conn, note, path=path, coll=coll):
            nid, owner, text = note
            st, body, raw = conn.call("POST", path, {"id": nid, "owner": owner, "text": text}, token)
            got = _check(st, body, raw, f"create {coll}/{nid}")
            if got.get("id") != nid:
                raise RuntimeError(f"{coll}: asked for id {nid}, got {got.get('id')}")
            return nid

        log(f"creating {len(notes)} records in {coll} ({concurrency} threads)")
        _, secs, errors, last = _parallel(base, notes, create_note, concurrency)
        out.update({f"{coll}_s": round(secs, 2), f"{coll}_rate": round(len(notes) / secs, 1)})
        if errors:
            fail(coll, errors, last)
        log(f"{len(notes)} {coll} in {secs:.1f}s ({len(notes) / secs:.1f}/s)")
    out["notes"] = len(notes)

    # 4. files for the wrk scripts
    token_of = {uid: tok for uid, tok in logins}
    picked = random.Random(7).sample(notes, min(pairs, len(notes)))
    with open(f"{outdir}/creds.txt", "w") as f:
        f.writelines(f"{e},{p}\n" for e, p in creds)
    with open(f"{outdir}/tokens.txt", "w") as f:
        f.writelines(f"{uid},{tok}\n" for uid, tok in logins)
    with open(f"{outdir}/pairs.txt", "w") as f:
        f.writelines(f"{token_of[owner]},{nid}\n" for nid, owner, _ in picked)
    with open(f"{outdir}/note-ids.txt", "w") as f:
        f.writelines(f"{nid}\n" for nid, _, _ in picked)
    out["pairs"] = len(picked)
    out["owners_in_pairs"] = len({owner for _, owner, _ in picked})
    print(json.dumps(out))


def cmd_auth_check(base, pairs_file):
    """GET one note of `notes` with its owner's token (must be 200 and the
    record), with another user's token and with none (both must be refused:
    PocketBase answers 404 when the viewRule fails), and the same id in
    `public_notes` without a token (must be 200). Prints the statuses as
    JSON; exit 2 if any is not as expected."""
    pairs = []
    with open(pairs_file) as f:
        for line in f:
            if line.strip():
                tok, nid = line.strip().rsplit(",", 1)
                pairs.append((tok, nid))
    tok, nid = pairs[0]
    other = next((t for t, _ in pairs[1:] if t != tok), None)
    conn = _Conn(base)
    rec = lambda c: f"/api/collections/{c}/records/{nid}"
    st_owner, body, _ = conn.call("GET", rec("notes"), token=tok)
    out = {"id": nid, "owner": st_owner,
           "other_user": conn.call("GET", rec("notes"), token=other)[0] if other else None,
           "guest": conn.call("GET", rec("notes"))[0],
           "public_guest": conn.call("GET", rec("public_notes"))[0]}
    conn.close()
    ok = (st_owner == 200 and isinstance(body, dict) and body.get("id") == nid
          and out["other_user"] is not None and not 200 <= out["other_user"] < 300
          and not 200 <= out["guest"] < 300 and out["public_guest"] == 200)
    out["ok"] = ok
    print(json.dumps(out))
    if not ok:
        sys.exit(2)


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


def cmd_dashboard_cookie(base, email, password):
    # The login form's double-submit token: a cookie plus the same value in
    # the form; the answer is a 303 that sets the session cookie.
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(base).netloc, timeout=TIMEOUT)
    conn.request("GET", "/_/login")
    resp = conn.getresponse()
    page = resp.read().decode()
    pre = [c.split(";", 1)[0] for c in resp.headers.get_all("Set-Cookie") or [] if c.startswith("basalt_login_csrf=")]
    marker = 'name="_csrf" value="'
    if resp.status != 200 or not pre or marker not in page:
        sys.exit(f"GET /_/login -> {resp.status}: no login form")
    token = page.split(marker, 1)[1].split('"', 1)[0]
    form = urllib.parse.urlencode({"_csrf": token, "email": email, "password": password, "next": ""})
    conn.request("POST", "/_/login", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": pre[0]})
    resp = conn.getresponse()
    resp.read()
    session = [c.split(";", 1)[0] for c in resp.headers.get_all("Set-Cookie") or [] if c.startswith("basalt_admin=")]
    if resp.status != 303 or not session:
        sys.exit(f"POST /_/login -> {resp.status}: no session cookie")
    print(session[0])


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


def _hash_params(h):
    """A stored password hash's algorithm and cost, e.g. 'argon2id m=19456 KiB,
    t=2, p=1' or 'bcrypt cost 10'; None if unknown."""
    if not h:
        return None
    parts = h.split("$")
    if h.startswith("$argon2") and len(parts) >= 4:
        params = dict(kv.split("=", 1) for kv in parts[3].split(",") if "=" in kv)
        return (f"{parts[1]} m={params.get('m', '?')} KiB, t={params.get('t', '?')}, "
                f"p={params.get('p', '?')}")
    if parts[1:2] and parts[1] in ("2a", "2b", "2y", "2") and len(parts) >= 3:
        return f"bcrypt cost {int(parts[2])}"
    return None


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
        if not p and by.get((key, "auth-data")):
            what, secs, rate = "none: auth data set (see below)", "–", "–"
        elif not p:
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
    auth = {key: by.get((key, "auth-data")) for key, _ in SERVERS}
    if any(auth.values()):
        w("")
        w("## Auth data set")
        w("")
        w("Built before the timed runs, not timed by wrk (`benchlib.py auth-data`, "
          f"{next(a for a in auth.values() if a).get('concurrency', '?')} threads, one "
          "keep-alive connection each). `records at read time` above counts `notes`; "
          "`public_notes` holds the same records.")
        w("")
        w("| Server | users created | one login per user | notes + public_notes created "
          "| password hash | rateLimits.enabled | rule check (notes: owner / other user / "
          "guest; public_notes: guest) |")
        w("|---|---:|---:|---:|---|---|---|")
        for key, name in SERVERS:
            a = auth[key]
            if not a:
                w(f"| {name} | {absent(key, 'auth-data')} | | | | | |")
                continue
            c, ck = a.get("counts", {}), a.get("check", {})
            notes_s = (a.get("notes_s") or 0) + (a.get("public_notes_s") or 0)
            w(f"| {name} | {_num(c.get('users'))} in {a['users_s']:.1f} s "
              f"({_num(a['users_rate'], 1)}/s) "
              f"| {_num(a['users'])} in {a['logins_s']:.1f} s ({_num(a['logins_rate'], 1)}/s) "
              f"| {_num(c.get('notes'))} + {_num(c.get('public_notes'))} in {notes_s:.1f} s "
              f"| {_hash_params(a.get('hash')) or 'not found'} "
              f"| {json.dumps(a.get('rate_limits_before'))} by default → "
              f"{json.dumps(a.get('rate_limits_after'))} "
              f"| {ck.get('owner')} / {ck.get('other_user')} / {ck.get('guest')}; "
              f"{ck.get('public_guest')} |")
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
    if "get-auth-rule" in order and "get-public" in order:
        w("")
        w("Cost of the `owner = @request.auth.id` rule on each server: `get-auth-rule` "
          "(token + rule) over `get-public` (same ids, no token, rule `\"\"`). req/s "
          "below 1 and latency above 1 are what the rule and the token cost.")
        w("")
        w("| Server | get-public req/s | get-auth-rule req/s | req/s | p50 | p99 |")
        w("|---|---:|---:|---:|---:|---:|")
        for key, name in SERVERS:
            pub, rul = by.get((key, "get-public"), {}), by.get((key, "get-auth-rule"), {})
            w(f"| {name} | {_num(pub.get('rps'))} | {_num(rul.get('rps'))} "
              f"| {_ratio(rul.get('rps'), pub.get('rps'))} "
              f"| {_ratio(rul.get('p50_us'), pub.get('p50_us'))} "
              f"| {_ratio(rul.get('p99_us'), pub.get('p99_us'))} |")
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
    if "create" in order or any(k[1] == "preload" for k in by):
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
    if "login" in order:
        hashes = "; ".join(f"{name}: {_hash_params(auth[key].get('hash')) or 'not found'}"
                           for key, name in SERVERS if auth.get(key))
        w("- `login` is `POST /api/collections/users/auth-with-password` cycling over the "
          f"{int(meta.get('users') or 0):,} users' credentials (`login.lua`; no warm-up: auth-data has "
          "just logged every user in once). Each request is one password verification, "
          f"slow by design; parameters as stored by each server ({hashes}). Basalt uses the "
          "argon2 crate's defaults (OWASP's minimum for argon2id), PocketBase bcrypt at its "
          "default cost. The figures measure the hashing cost each server chose, not only "
          "the server. At 64 connections every login queues behind the others (latency ≈ 64 ÷ "
          "req/s), so the first responses of a run only arrive after about that long and a "
          "short run understates req/s; wrk's `--timeout` for login is 60 s "
          "(`BENCH_WRK_TIMEOUT_LOGIN`) so that slow logins count in the latencies, not as "
          "timeouts. Basalt's default rate limit (`*:auth` 5 per 10 s per address and per "
          "account) was turned off first with `PATCH /api/settings "
          "{\"rateLimits\":{\"enabled\":false}}` (superuser); PocketBase's is off by "
          "default (the same PATCH is sent to it).")
    if "get-auth-rule" in order or "get-public" in order:
        w(f"- `get-auth-rule` is `GET /api/collections/notes/records/<id>` with "
          "`Authorization: <token of the note's owner>` (`get_auth.lua`; "
          f"{meta.get('ids', '?')} token,id pairs drawn at random over all notes, tokens from "
          "one login per user before the runs); `notes` has listRule/viewRule "
          "`owner = @request.auth.id` and an index on `owner` (Basalt "
          "`{\"name\":\"by_owner\",\"fields\":[\"owner\"]}` on an `x-relation` string "
          "field, PocketBase a relation field to `users` and "
          "`CREATE INDEX idx_notes_owner ON notes (owner)`). `get-public` GETs the same ids "
          "in `public_notes` (same records, rules `\"\"`) without a token. Both after a "
          "warm-up.")
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
    kwargs = {}
    if "--concurrency" in args:
        i = args.index("--concurrency")
        kwargs["concurrency"] = args[i + 1]
        args = args[:i] + args[i + 2:]
    fn = {
        "free-port": cmd_free_port,
        "health": cmd_health,
        "token": cmd_token,
        "post-json": cmd_post_json,
        "count": cmd_count,
        "request": cmd_request,
        "auth-data": cmd_auth_data,
        "auth-check": cmd_auth_check,
        "ids": cmd_ids,
        "load": cmd_load,
        "probe": cmd_probe,
        "follow-cursor": cmd_follow_cursor,
        "dashboard-cookie": cmd_dashboard_cookie,
        "jget": cmd_jget,
        "json": cmd_json,
        "wrk-result": cmd_wrk_result,
        "report": cmd_report,
    }.get(cmd)
    if fn is None:
        sys.exit(f"unknown command {cmd!r}\n{__doc__}")
    fn(*args, **kwargs)


if __name__ == "__main__":
    main(sys.argv)
