// The PocketBase JS SDK, set up for Node, plus the small helpers the tests
// share: a logged-in superuser client, collection fixtures, waiting for
// mails in the dev outbox and for realtime events.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { EventSource } from "eventsource";
import PocketBase, { ClientResponseError } from "pocketbase";

import { SU_EMAIL, SU_PASSWORD } from "./server.js";

// The SDK's realtime service uses the browser's global EventSource.
globalThis.EventSource ??= EventSource;

export { PocketBase, ClientResponseError };

/** A guest SDK client. */
export function client(server) {
    return new PocketBase(server.url);
}

/** An SDK client logged in as the superuser. */
export async function admin(server) {
    const pb = new PocketBase(server.url);
    await pb.collection("_superusers").authWithPassword(SU_EMAIL, SU_PASSWORD);
    return pb;
}

/**
 * Starting point of every suite: a superuser client with the auth rate
 * limits switched off (the suites log in far more than 5 times in 10 s).
 */
export async function adminWithoutRateLimits(server) {
    const pb = await admin(server);
    await pb.settings.update({ rateLimits: { enabled: false } });
    return pb;
}

const PUBLIC_RULES = { listRule: "", viewRule: "", createRule: "", updateRule: "", deleteRule: "" };

/** `authors` and `posts` (posts.author → authors), every rule public. */
export async function createBlogCollections(pb) {
    await pb.collections.create({
        name: "authors",
        ...PUBLIC_RULES,
        schema: {
            type: "object",
            properties: { name: { type: "string" }, country: { type: "string" } },
            required: ["name"],
        },
    });
    await pb.collections.create({
        name: "posts",
        ...PUBLIC_RULES,
        schema: {
            type: "object",
            properties: {
                title: { type: "string", maxLength: 50 },
                views: { type: "integer", minimum: 0 },
                author: { type: "string", "x-relation": { collection: "authors" } },
            },
            required: ["title"],
            additionalProperties: false,
        },
        indexes: [{ name: "by_views", fields: ["views"] }],
    });
}

/** Rejects after `ms` unless `promise` settles first. */
export function within(ms, promise, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves after `ms` (only for polling loops, never as synchronisation). */
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The names of the mails in the dev outbox now. */
export function outboxNames(server) {
    try {
        return new Set(readdirSync(join(server.dir, "outbox")));
    } catch (err) {
        if (err.code === "ENOENT") return new Set();
        throw err;
    }
}

/**
 * Waits (polling, up to `ms`) for a mail to `to` that is not in `before`
 * (a set from `outboxNames`) and returns the newest such mail's text. Mails
 * are written by a background task after the request has been answered.
 */
export async function waitForMail(server, to, before, ms = 10_000) {
    const deadline = Date.now() + ms;
    for (;;) {
        const fresh = [...outboxNames(server)]
            .filter((name) => name.endsWith(".eml") && !before.has(name))
            .sort() // names start with the time in ms: newest last
            .map((name) => readFileSync(join(server.dir, "outbox", name), "utf8"))
            .filter((text) => text.includes(`\r\nTo: ${to}\r\n`) || text.startsWith(`To: ${to}\r\n`));
        if (fresh.length) return fresh[fresh.length - 1];
        if (Date.now() > deadline) throw new Error(`no new mail to ${to} in ${server.dir}/outbox within ${ms} ms`);
        await pause(25);
    }
}

/** The `Token: …` line of a mail. */
export function tokenIn(mail) {
    const m = /^Token: (\S+)\s*$/m.exec(mail);
    if (!m) throw new Error(`no "Token:" line in mail:\n${mail}`);
    return m[1];
}

/**
 * Collects callback invocations and hands them out in order:
 * `const q = new Inbox(); subscribe(..., q.push); await q.next(5000)`.
 */
export class Inbox {
    items = [];
    waiters = [];
    push = (item) => {
        const waiter = this.waiters.shift();
        if (waiter) waiter(item);
        else this.items.push(item);
    };
    /** The next item, or a rejection after `ms`. */
    next(ms = 5000, what = "a realtime event") {
        if (this.items.length) return Promise.resolve(this.items.shift());
        let resolve;
        const p = new Promise((r) => (resolve = r));
        this.waiters.push(resolve);
        return within(ms, p, what).catch((err) => {
            this.waiters = this.waiters.filter((w) => w !== resolve);
            throw err;
        });
    }
    /** Waits for the next item matching `pred`, dropping the ones before it. */
    async until(pred, ms = 5000, what = "a matching realtime event") {
        const deadline = Date.now() + ms;
        for (;;) {
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
            const item = await this.next(left, what);
            if (pred(item)) return item;
        }
    }
    get pending() {
        return this.items.length;
    }
}
