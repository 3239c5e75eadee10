// Auth rate limits as the SDK sees them: a 429 is a ClientResponseError
// with status 429. (The other suites switch the limits off.)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer } from "./lib/server.js";
import { ClientResponseError, adminWithoutRateLimits, client } from "./lib/sdk.js";

let server;
let su;

before(async () => {
    server = await startServer();
    su = await adminWithoutRateLimits(server);
});

after(async () => {
    await server?.stop();
});

test("a rate-limited login is a ClientResponseError with status 429", async () => {
    const pb = client(server);
    const email = "rita@example.com";
    await pb.collection("users").create({ email, password: "password-1", passwordConfirm: "password-1" });

    await su.settings.update({
        rateLimits: { enabled: true, rules: [{ label: "*:auth", maxRequests: 5, duration: 10 }] },
    });
    const statuses = [];
    let limited;
    for (let i = 0; i < 10 && !limited; i++) {
        try {
            await pb.collection("users").authWithPassword(email, "wrong password");
            statuses.push(200);
        } catch (err) {
            assert.ok(err instanceof ClientResponseError, String(err?.stack ?? err));
            statuses.push(err.status);
            if (err.status === 429) limited = err;
        }
    }
    // At most 5 tries per 10 s (the superuser's own login may already have
    // counted against this address), each refused with 400, then 429.
    assert.equal(statuses.at(-1), 429, `statuses: ${statuses}`);
    assert.ok(statuses.length >= 2 && statuses.length <= 6, `statuses: ${statuses}`);
    assert.ok(
        statuses.slice(0, -1).every((s) => s === 400),
        `statuses: ${statuses}`,
    );
    assert.equal(limited.response.status, 429);
    assert.equal(typeof limited.response.message, "string");
    assert.equal(limited.isAbort, false);
    // The right password does not get past the limit either.
    const blocked = await pb.collection("users").authWithPassword(email, "password-1").catch((e) => e);
    assert.ok(blocked instanceof ClientResponseError);
    assert.equal(blocked.status, 429);
    assert.equal(pb.authStore.isValid, false);

    // Switched off again, the same client logs in at once.
    await su.settings.update({ rateLimits: { enabled: false } });
    const auth = await pb.collection("users").authWithPassword(email, "password-1");
    assert.equal(auth.record.email, email);
});

test("settings.rateLimits takes PocketBase's rule shape (with audience)", async () => {
    // PocketBase's rate limit rule: {label, audience: "" | "@guest" | "@auth", duration, maxRequests}.
    const settings = await su.settings.update({
        rateLimits: {
            enabled: false,
            rules: [
                { label: "*:auth", audience: "", maxRequests: 5, duration: 10 },
                { label: "/api/", audience: "@guest", maxRequests: 300, duration: 10 },
            ],
        },
    });
    assert.equal(settings.rateLimits.rules.length, 2);
    assert.equal(settings.rateLimits.rules[1].audience, "@guest");
});
