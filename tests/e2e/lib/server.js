// Starts the real `basalt` binary on a fresh temp data dir (with a superuser)
// and stops it again. Every process started here is killed (and its data
// dir removed) when the test process exits or is interrupted (SIGINT,
// SIGTERM, SIGHUP); only a SIGKILLed test process cannot clean up.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export const SU_EMAIL = "root@example.com";
export const SU_PASSWORD = "correct horse battery";

/** The binary under test: $BASALT_BIN, else $CARGO_TARGET_DIR/debug/basalt. */
export const BASALT_BIN =
    process.env.BASALT_BIN ||
    join(process.env.CARGO_TARGET_DIR || "/var/tmp/basalt-target", "debug", "basalt");

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const LOG_TAIL_LINES = 200;

const live = new Set(); // child processes still running
const servers = new Set(); // handles not stopped yet
const dirs = new Set(); // temp data dirs to remove on exit

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
        process.kill(process.pid, signal); // default action now that the handler is gone
    });
}

/**
 * Once every server of this test file is stopped, the file is done. The
 * SDK's realtime client retries its connection forever (with timers that
 * keep Node running) if it was reconnecting when its server went away, e.g.
 * after a failed assertion; so a file whose event loop is still busy
 * a few seconds later exits. (The test runner has received every result by
 * then and counts failures itself.)
 */
function exitIfStuck() {
    setTimeout(() => process.exit(), 3000).unref();
}

/**
 * Spawns `basalt serve` on `dir` and resolves once it prints its listening
 * line. `port` 0 picks a free port.
 */
function spawnServe(dir, port) {
    const child = spawn(BASALT_BIN, ["serve", "--http", `127.0.0.1:${port}`, "--dir", dir], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info", BASALT_WORKERS: "2" },
    });
    live.add(child);
    const exited = new Promise((resolve) =>
        child.once("exit", (code, signal) => {
            live.delete(child);
            resolve({ code, signal });
        }),
    );

    // Both pipes are always drained (a full pipe would block the server);
    // the tail of the log is kept for failure messages.
    const tail = [];
    const keep = (prefix) => (line) => {
        if (process.env.BASALT_E2E_LOG) process.stderr.write(`[basalt ${prefix}] ${line}\n`);
        tail.push(line);
        if (tail.length > LOG_TAIL_LINES) tail.shift();
    };
    createInterface({ input: child.stderr }).on("line", keep("err"));
    const stdout = createInterface({ input: child.stdout });
    stdout.on("line", keep("out"));

    const listening = new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            child.kill("SIGKILL");
            reject(new Error(`basalt did not start within ${START_TIMEOUT_MS} ms:\n${tail.join("\n")}`));
        }, START_TIMEOUT_MS);
        stdout.on("line", (line) => {
            const m = /^Basalt listening on (http:\/\/\S+) /.exec(line);
            if (m) {
                clearTimeout(timer);
                resolve(m[1]);
            }
        });
        child.once("error", (err) => {
            clearTimeout(timer);
            reject(new Error(`cannot run ${BASALT_BIN}: ${err.message} (build it or set BASALT_BIN)`));
        });
        exited.then(({ code, signal }) => {
            clearTimeout(timer);
            reject(new Error(`basalt exited (code ${code}, signal ${signal}) before listening:\n${tail.join("\n")}`));
        });
    });
    return { child, exited, listening, tail };
}

/** Stops a process: SIGTERM (graceful), SIGKILL if it takes too long. */
async function stopProcess(proc, timeoutMs = STOP_TIMEOUT_MS) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) return proc.exited;
    proc.child.kill("SIGTERM");
    let timer;
    const late = new Promise((resolve) => {
        timer = setTimeout(() => {
            proc.child.kill("SIGKILL");
            resolve();
        }, timeoutMs);
    });
    await Promise.race([proc.exited, late]);
    clearTimeout(timer);
    return proc.exited;
}

/**
 * Starts basalt on a fresh temp data dir with one superuser
 * (SU_EMAIL / SU_PASSWORD). Resolves to
 * `{ url, dir, port, stop(), restart(), logTail() }`.
 */
export async function startServer() {
    const dir = mkdtempSync(join(tmpdir(), "basalt-e2e-"));
    dirs.add(dir);
    try {
        execFileSync(BASALT_BIN, ["superuser", "upsert", SU_EMAIL, SU_PASSWORD, "--dir", dir], {
            stdio: ["ignore", "ignore", "pipe"],
            env: { ...process.env, RUST_LOG: "warn" },
        });
    } catch (err) {
        throw new Error(`cannot create the superuser with ${BASALT_BIN}: ${err.stderr || err.message}`);
    }
    let proc = spawnServe(dir, 0);
    const url = await proc.listening;
    const port = Number(new URL(url).port);

    const server = {
        url,
        dir,
        port,
        /** The last lines the server logged (for assertion messages). */
        logTail: () => proc.tail.join("\n"),
        /**
         * Stops the process (SIGTERM, then SIGKILL after `stopTimeoutMs`)
         * and starts it again on the same data dir and port (the URL stays
         * the same). Resolves with how the old process ended and how long
         * stopping took: `{ code, signal, stopMs }`.
         */
        async restart({ stopTimeoutMs = STOP_TIMEOUT_MS } = {}) {
            const started = Date.now();
            const ended = await stopProcess(proc, stopTimeoutMs);
            const stopMs = Date.now() - started;
            proc = spawnServe(dir, port);
            await proc.listening;
            return { ...ended, stopMs };
        },
        /** Stops the process and removes the data dir. */
        async stop() {
            const ended = await stopProcess(proc);
            rmSync(dir, { recursive: true, force: true });
            dirs.delete(dir);
            servers.delete(server);
            if (servers.size === 0) exitIfStuck();
            return ended;
        },
    };
    servers.add(server);
    return server;
}
