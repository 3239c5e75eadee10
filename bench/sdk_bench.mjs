// SDK insert/read benchmark (TrailBase's published scenario): through the
// official `pocketbase` JS SDK, insert N records with C requests in flight
// (a pool of C async workers), then read every one back by id with C in
// flight. Driven by bench/sdk.sh, which starts the servers; see
// bench/README.md ("SDK insert/read benchmark").
//
//   node bench/sdk_bench.mjs run --url URL --kind basalt|pocketbase \
//        --email E --password P [--records 100000] [--concurrency 64] \
//        [--pid SERVER_PID] --out result.json
//   node bench/sdk_bench.mjs report META.json RESULT.json... > report.md
//
// The SDK is the one the e2e suite pins: tests/e2e/node_modules/pocketbase
// (`npm ci` there first).

import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const E2E = join(HERE, "..", "tests", "e2e");

async function loadSdk() {
    const require = createRequire(join(E2E, "package.json"));
    let entry;
    try {
        entry = require.resolve("pocketbase");
    } catch {
        throw new Error(`the pocketbase SDK is not installed in ${E2E}: run \`npm ci\` there`);
    }
    const sdk = await import(pathToFileURL(entry).href);
    const version = JSON.parse(readFileSync(join(dirname(entry), "..", "package.json"), "utf8")).version;
    return { PocketBase: sdk.default, version };
}

function parseArgs(argv) {
    const out = {};
    for (let i = 0; i < argv.length; i++) {
        const m = /^--([a-z-]+)$/.exec(argv[i]);
        if (!m) throw new Error(`unexpected argument ${argv[i]}`);
        out[m[1]] = argv[++i];
    }
    return out;
}

// --- collections -------------------------------------------------------------------
// The same shape as bench/run.sh's `posts` (without `body`): public rules,
// title required, views an integer >= 0, no secondary index.

const PUBLIC = { listRule: "", viewRule: "", createRule: "", updateRule: "", deleteRule: "" };
const COLLECTION = {
    basalt: {
        name: "posts",
        type: "base",
        ...PUBLIC,
        indexes: [],
        schema: {
            type: "object",
            properties: { title: { type: "string" }, views: { type: "integer", minimum: 0 } },
            required: ["title"],
            additionalProperties: false,
        },
    },
    pocketbase: {
        name: "posts",
        type: "base",
        ...PUBLIC,
        indexes: [],
        fields: [
            { name: "title", type: "text", required: true },
            { name: "views", type: "number", onlyInt: true, min: 0 },
            { name: "created", type: "autodate", onCreate: true },
            { name: "updated", type: "autodate", onCreate: true, onUpdate: true },
        ],
    },
};

// --- measuring ---------------------------------------------------------------------

/** utime + stime of a process in seconds (/proc/<pid>/stat), or null. */
function cpuSeconds(pid) {
    if (!pid) return null;
    try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        return (Number(fields[11]) + Number(fields[12])) / 100; // fields 14 and 15 (USER_HZ = 100)
    } catch {
        return null;
    }
}

function percentile(sorted, p) {
    if (!sorted.length) return null;
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
    return sorted[i];
}

/**
 * Runs `task(i)` for i in 0..n-1 with `concurrency` workers, each awaiting
 * one request at a time. Resolves to the phase's figures.
 */
async function pool(n, concurrency, task, serverPid) {
    const latencies = new Float64Array(n);
    const errors = [];
    let next = 0;
    const cpu0 = process.cpuUsage();
    const server0 = cpuSeconds(serverPid);
    const started = performance.now();
    async function worker() {
        for (;;) {
            const i = next++;
            if (i >= n) return;
            const t0 = performance.now();
            try {
                await task(i);
            } catch (err) {
                errors.push(`#${i}: ${err?.status ?? ""} ${err?.message ?? err}`.trim());
            }
            latencies[i] = performance.now() - t0;
        }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const server1 = cpuSeconds(serverPid);
    const sorted = Array.from(latencies).sort((a, b) => a - b);
    return {
        requests: n,
        errors: errors.length,
        firstErrors: errors.slice(0, 5),
        seconds,
        throughput: n / seconds,
        latencyMs: {
            p50: percentile(sorted, 50),
            p95: percentile(sorted, 95),
            p99: percentile(sorted, 99),
            max: sorted[sorted.length - 1],
            mean: sorted.reduce((a, b) => a + b, 0) / n,
        },
        clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
        serverCpuSeconds: server0 === null || server1 === null ? null : server1 - server0,
    };
}

async function run(args) {
    const { PocketBase, version } = await loadSdk();
    const kind = args.kind;
    if (!COLLECTION[kind]) throw new Error(`--kind must be basalt or pocketbase, not ${kind}`);
    const records = Number(args.records ?? 100_000);
    const concurrency = Number(args.concurrency ?? 64);
    const serverPid = args.pid ? Number(args.pid) : null;

    const su = new PocketBase(args.url);
    su.autoCancellation(false);
    await su.collection("_superusers").authWithPassword(args.email, args.password);
    await su.collections.create(COLLECTION[kind]);

    // The measured client: a guest (the rules are public), auto-cancellation off.
    const pb = new PocketBase(args.url);
    pb.autoCancellation(false);
    const posts = pb.collection("posts");
    const ids = new Array(records);

    const log = (msg) => process.stderr.write(`[sdk_bench ${kind}] ${msg}\n`);
    log(`inserting ${records} records, ${concurrency} in flight`);
    const insert = await pool(
        records,
        concurrency,
        async (i) => {
            const rec = await posts.create({ title: `hello ${i}`, views: i % 1000 }, { requestKey: null });
            if (typeof rec?.id !== "string") throw new Error(`create #${i} answered no id`);
            ids[i] = rec.id;
        },
        serverPid,
    );
    log(`inserts: ${insert.seconds.toFixed(2)} s, ${insert.throughput.toFixed(0)}/s, ${insert.errors} errors`);

    const readable = ids.filter(Boolean).length;
    let mismatches = 0;
    log(`reading ${readable} records back by id, ${concurrency} in flight`);
    const read = await pool(
        records,
        concurrency,
        async (i) => {
            if (!ids[i]) throw new Error(`no id for #${i} (its insert failed)`);
            const rec = await posts.getOne(ids[i], { requestKey: null });
            if (rec.id !== ids[i] || rec.title !== `hello ${i}` || rec.views !== i % 1000) mismatches++;
        },
        serverPid,
    );
    log(`reads: ${read.seconds.toFixed(2)} s, ${read.throughput.toFixed(0)}/s, ${read.errors} errors, ${mismatches} mismatches`);

    const total = await su.collection("posts").getList(1, 1, { requestKey: null });
    const result = {
        kind,
        url: args.url,
        sdkVersion: version,
        node: process.version,
        records,
        concurrency,
        insert,
        read: { ...read, mismatches },
        totalItemsAfter: total.totalItems,
    };
    writeFileSync(args.out, JSON.stringify(result, null, 2));
    if (insert.errors || read.errors || mismatches || total.totalItems !== records) {
        log(`FAILED: ${insert.errors} insert errors, ${read.errors} read errors, ${mismatches} mismatches, totalItems ${total.totalItems}`);
        process.exitCode = 1;
    }
}

// --- report ------------------------------------------------------------------------

const fmt = (x, digits = 1) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const int = (x) => (x === null || x === undefined ? "–" : Math.round(x).toLocaleString("en-US"));

function report(metaPath, resultPaths) {
    const meta = JSON.parse(readFileSync(metaPath, "utf8"));
    const results = resultPaths.map((p) => JSON.parse(readFileSync(p, "utf8")));
    const byKind = Object.fromEntries(results.map((r) => [r.kind, r]));
    const names = { basalt: "Basalt", pocketbase: "PocketBase" };
    const lines = [];
    const out = (s = "") => lines.push(s);
    const any = results[0];

    out(`# SDK insert/read benchmark: Basalt vs PocketBase (${meta.date})`);
    out();
    out(
        `TrailBase's published scenario: through the official \`pocketbase\` JS SDK ` +
            `(${any?.sdkVersion ?? "?"}, Node ${any?.node ?? "?"}), insert ` +
            `${int(meta.records)} records into a public collection \`posts\` ` +
            `(\`title\` text, \`views\` integer) with ${meta.concurrency} requests in flight ` +
            `(a pool of ${meta.concurrency} async workers, auto-cancellation off), then read ` +
            `each one back by id (\`getOne\`) with ${meta.concurrency} in flight. ` +
            `Each server runs alone on a fresh data dir; the client runs on the same machine.`,
    );
    out();
    out("| | |");
    out("|---|---|");
    for (const [k, v] of [
        ["date", meta.date],
        ["machine", `${meta.nproc} cores, ${meta.cpu}, ${meta.ram} RAM, kernel ${meta.kernel}`],
        ["data dirs", meta.fs],
        ["git commit", meta.commit],
        ["Basalt", meta.basalt],
        ["PocketBase", meta.pocketbase],
        ["load before the run", meta.load],
        ["idle wait", meta.idle],
    ]) {
        if (v) out(`| ${k} | ${v} |`);
    }
    out();

    out("## Results");
    out();
    out("| server | phase | requests | errors | total time (s) | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | client CPU (s) | server CPU (s) |");
    out("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (const r of results) {
        for (const phase of ["insert", "read"]) {
            const x = r[phase];
            const errs = x.errors + (phase === "read" && x.mismatches ? ` (+${x.mismatches} mismatches)` : "");
            out(
                `| ${names[r.kind]} | ${phase} | ${int(x.requests)} | ${errs} | ${fmt(x.seconds, 2)} | ${int(x.throughput)} | ` +
                    `${fmt(x.latencyMs.p50, 2)} | ${fmt(x.latencyMs.p95, 2)} | ${fmt(x.latencyMs.p99, 2)} | ` +
                    `${fmt(x.clientCpuSeconds)} | ${fmt(x.serverCpuSeconds)} |`,
            );
        }
    }
    out();
    for (const kind of Object.keys(names)) {
        const s = meta.servers?.[kind];
        if (s) out(`- ${names[kind]}: ${s}`);
    }
    out();

    if (byKind.basalt && byKind.pocketbase) {
        const b = byKind.basalt;
        const p = byKind.pocketbase;
        out("## Ratios (Basalt / PocketBase)");
        out();
        out("Throughput above 1 means Basalt is faster; time and latency below 1 mean Basalt is better.");
        out();
        out("| phase | total time | throughput | p50 | p95 |");
        out("|---|---:|---:|---:|---:|");
        for (const phase of ["insert", "read"]) {
            const r = (f) => fmt(f(b[phase]) / f(p[phase]), 2);
            out(
                `| ${phase} | ${r((x) => x.seconds)} | ${r((x) => x.throughput)} | ` +
                    `${r((x) => x.latencyMs.p50)} | ${r((x) => x.latencyMs.p95)} |`,
            );
        }
        out();
    }

    out("## Notes");
    out();
    out(
        "- Latency is measured in the client around each SDK call (request, JSON parse, SDK overhead), " +
            "from the moment a worker sends until the answer is parsed. Total time is wall time for the whole phase.",
    );
    out(
        "- Client and server share the machine's cores. The client CPU column is the Node process " +
            "(`process.cpuUsage()`), the server column the server's utime+stime from `/proc/<pid>/stat`, both for the phase; " +
            "if their sum is close to cores × total time, the figures are CPU-bound on this machine, not a server limit.",
    );
    out(
        "- Basalt answers a create after the write is fsynced (group commit); PocketBase writes to SQLite in WAL mode " +
            "with `synchronous=NORMAL` and does not fsync before answering.",
    );
    out("- Every read is checked (id, title and views as inserted); a mismatch counts as an error.");
    out();
    out("## Commands");
    out();
    out("```sh");
    for (const c of meta.commands ?? []) out(c);
    out("```");
    return lines.join("\n") + "\n";
}

// --- main --------------------------------------------------------------------------

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === "run") {
    await run(parseArgs(rest));
} else if (cmd === "report") {
    process.stdout.write(report(rest[0], rest.slice(1)));
} else {
    process.stderr.write("usage: sdk_bench.mjs run --url URL --kind basalt|pocketbase --email E --password P --out FILE\n       sdk_bench.mjs report META.json RESULT.json...\n");
    process.exit(2);
}
