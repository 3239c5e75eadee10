// A real SMTP server for tests that need mails out of a server that has no
// dev outbox (PocketBase): tests/support/smtp_sink.py (aiosmtpd) on a free
// loopback port, storing each message as `<dir>/<n>.eml`. Killed when the
// test process exits; its stdin is a pipe, so it also exits if this
// process dies without cleaning up.

import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "support", "smtp_sink.py");
const START_TIMEOUT_MS = 15_000;

const live = new Set();
process.on("exit", () => {
    for (const sink of live) sink.kill();
});

/** Resolves after `ms` (only for polling loops, never as synchronisation). */
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts a sink. Resolves to `{ port, dir, mailTo(to, seen, ms), stop() }`;
 * rejects when python3 or aiosmtpd is missing (see scripts/test.sh).
 */
export async function startSink() {
    const dir = mkdtempSync(join(tmpdir(), "basalt-sink-"));
    const child = spawn("python3", [SCRIPT, dir], { stdio: ["pipe", "pipe", "inherit"] });
    const kill = () => {
        try {
            child.kill("SIGKILL");
        } catch {}
        rmSync(dir, { recursive: true, force: true });
    };
    const sink = { kill };
    live.add(sink);
    const port = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("smtp_sink.py did not start in time")), START_TIMEOUT_MS);
        child.once("error", reject);
        child.once("exit", (code) => reject(new Error(`smtp_sink.py exited (${code}); is aiosmtpd installed?`)));
        createInterface({ input: child.stdout }).once("line", (line) => {
            clearTimeout(timer);
            const m = /^ready (\d+)$/.exec(line.trim());
            m ? resolve(Number(m[1])) : reject(new Error(`smtp_sink.py said ${JSON.stringify(line)}`));
        });
    }).catch((err) => {
        kill();
        live.delete(sink);
        throw err;
    });
    return {
        port,
        dir,
        /**
         * The `seen`-th (0-based) mail to `to`, waiting for it (polling,
         * up to `ms`): servers send mails after they answered.
         */
        async mailTo(to, seen = 0, ms = 10_000) {
            const deadline = Date.now() + ms;
            for (;;) {
                const mails = readdirSync(dir)
                    .filter((name) => name.endsWith(".eml"))
                    .sort()
                    .map((name) => readFileSync(join(dir, name), "utf8"))
                    .filter((text) => new RegExp(`(^|\\r\\n)To: ${to.replace(/[.+]/g, "\\$&")}\\r\\n`).test(text));
                if (mails.length > seen) return mails[seen];
                if (Date.now() > deadline) throw new Error(`no mail #${seen} to ${to} in the SMTP sink within ${ms} ms`);
                await pause(25);
            }
        },
        stop() {
            kill();
            live.delete(sink);
        },
    };
}

/**
 * The one-time code of `length` digits in a mail's text/plain part (or its
 * whole text when it has none), quoted-printable soft breaks undone.
 */
export function otpCodeIn(mail, length) {
    const start = mail.indexOf("Content-Type: text/plain");
    let text = start >= 0 ? mail.slice(start) : mail;
    const bodyAt = text.indexOf("\r\n\r\n");
    if (bodyAt >= 0) text = text.slice(bodyAt + 4);
    if (start >= 0) text = text.split("\r\n--")[0];
    text = text.replace(/=\r\n/g, "");
    const m = new RegExp(`(?<!\\d)\\d{${length}}(?!\\d)`).exec(text);
    if (!m) throw new Error(`no ${length}-digit code in mail:\n${mail}`);
    return m[0];
}
