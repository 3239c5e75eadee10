// The admin APIs as the SDK's services use them: pb.logs (getList with
// filter and sort, getOne, getStats), pb.health.check, pb.settings
// (the s3/backups/smtp sections PocketBase has) and pb.settings.testS3.

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

/** The error a call fails with (the test fails if it succeeds). */
async function failure(promise) {
    try {
        await promise;
    } catch (err) {
        assert.ok(err instanceof ClientResponseError, String(err?.stack ?? err));
        return err;
    }
    assert.fail("expected the call to fail");
}

/**
 * The request log is written by a background thread: polls `read` until
 * `done(answer)` holds, for at most 10 s (a deadline, not a sleep: it
 * returns as soon as the entries are there).
 */
async function eventually(read, done) {
    const deadline = Date.now() + 10_000;
    for (;;) {
        const answer = await read();
        if (done(answer) || Date.now() > deadline) return answer;
        await new Promise((r) => setTimeout(r, 50));
    }
}

test("pb.logs: getList with filter and sort, getOne, getStats", async () => {
    const guest = client(server);
    for (const id of ["e2e1", "e2e0", "e2e2"]) {
        await failure(guest.collection("users").getOne(id));
    }
    const filter = 'data.status = 404 && data.url ~ "records/e2e"';
    const page = await eventually(
        () => su.logs.getList(1, 10, { filter, sort: "data.url" }),
        (p) => p.totalItems === 3,
    );
    assert.equal(page.totalItems, 3);
    assert.deepEqual(
        page.items.map((i) => i.data.url),
        ["e2e0", "e2e1", "e2e2"].map((id) => `/api/collections/users/records/${id}`),
    );
    for (const item of page.items) {
        assert.equal(item.data.method, "GET");
        assert.equal(item.level, 8);
        assert.equal(typeof item.created, "string");
        assert.equal(item.message, `GET ${item.data.url}`);
    }
    const newest = await su.logs.getList(1, 1, { filter, sort: "-created" });
    assert.equal(newest.items[0].data.url, "/api/collections/users/records/e2e2");

    const one = await su.logs.getOne(page.items[1].id);
    assert.deepEqual(one, page.items[1]);
    assert.equal((await failure(su.logs.getOne("1-0"))).status, 404);

    const stats = await su.logs.getStats({ filter });
    assert.ok(Array.isArray(stats));
    assert.equal(stats.reduce((n, row) => n + row.total, 0), 3);
    assert.ok(stats.every((row) => /^\d{4}-\d\d-\d\d \d\d:00:00\.000Z$/.test(row.date)), JSON.stringify(stats));

    assert.equal((await failure(su.logs.getList(1, 10, { filter: "nosuch = 1" }))).status, 400);
    assert.equal((await failure(su.logs.getList(1, 10, { sort: "nosuch" }))).status, 400);
    assert.equal((await failure(su.logs.getStats({ filter: "data.status >" }))).status, 400);
    assert.equal((await failure(guest.logs.getList(1, 10))).status, 401);
    const amy = client(server);
    await amy.collection("users").create({ email: "amy-logs@example.com", password: "password-1", passwordConfirm: "password-1" });
    await amy.collection("users").authWithPassword("amy-logs@example.com", "password-1");
    assert.equal((await failure(amy.logs.getList(1, 10))).status, 403);
    assert.equal((await failure(amy.logs.getStats())).status, 403);
});

test("pb.health.check: data for superusers only", async () => {
    const guest = client(server);
    assert.deepEqual(await guest.health.check(), { message: "API is healthy.", code: 200, data: {} });
    const health = await su.health.check();
    assert.equal(health.code, 200);
    assert.deepEqual(Object.keys(health.data).sort(), ["canBackup", "possibleProxyHeader", "realIP"]);
    assert.equal(health.data.canBackup, true);
    assert.equal(health.data.realIP, "127.0.0.1");
});

test("pb.settings: s3, backups and smtp sections round-trip, secrets stay hidden", async () => {
    const before = await su.settings.getAll();
    assert.deepEqual(before.superuserIPs, []);
    assert.equal(before.s3.enabled, false);
    assert.equal(before.backups.cronMaxKeep, 3);
    assert.equal(before.smtp.tls, false);

    const s3 = {
        enabled: true,
        bucket: "media",
        region: "eu-west-1",
        // Loopback, where nothing listens: enabling it points file storage
        // there, and the tests reach nothing outside the machine.
        endpoint: "http://127.0.0.1:9",
        accessKey: "AKIA-E2E",
        secret: "e2e-very-secret",
        forcePathStyle: true,
    };
    const saved = await su.settings.update({
        s3,
        backups: { cron: "@daily", cronMaxKeep: 5 },
        smtp: { authMethod: "LOGIN", localName: "mail.example.com", tls: true },
    });
    assert.ok(!JSON.stringify(saved).includes("e2e-very-secret"));
    assert.equal(saved.s3.bucket, "media");
    assert.equal(saved.backups.cron, "@daily");
    assert.equal(saved.smtp.tls, true);
    assert.equal(saved.smtp.authMethod, "LOGIN");

    // Writing back what was read keeps the secret (enabled S3 needs one).
    const again = await su.settings.getAll();
    await su.settings.update({ s3: again.s3, backups: again.backups });

    const bad = await failure(su.settings.update({ backups: { cron: "every day" } }));
    assert.equal(bad.status, 400);
    assert.equal(bad.response.data.backups.cron.code, "validation_invalid_cron");

    // testS3: the enabled bucket's endpoint does not answer; the other is off.
    const enabled = await failure(su.settings.testS3("storage"));
    assert.equal(enabled.status, 400);
    assert.match(enabled.response.message, /cannot connect/);
    const off = await failure(su.settings.testS3("backups"));
    assert.match(off.response.message, /S3 storage filesystem is not enabled/);
    const invalid = await failure(su.settings.testS3("nope"));
    assert.equal(invalid.response.data.filesystem.code, "validation_in_invalid");

    await su.settings.update({ s3: { enabled: false }, backups: { cron: "" }, smtp: { tls: false, authMethod: "" } });
});
