// Backups through the SDK's `pb.backups` service (/api/backups): list,
// create, download link (with a file token from `pb.files.getToken()`), delete; restore is refused while the server runs
// (it needs `basalt backup restore` on a stopped server).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer } from "./lib/server.js";
import { ClientResponseError, adminWithoutRateLimits, createBlogCollections } from "./lib/sdk.js";

let server;
let su;

before(async () => {
    server = await startServer();
    su = await adminWithoutRateLimits(server);
    await createBlogCollections(su);
});

after(async () => {
    await server?.stop();
});

test("pb.backups: create, list, download, delete; restore is refused", async () => {
    assert.deepEqual(await su.backups.getFullList(), []);
    await su.backups.create("");
    await su.backups.create("before-upgrade.backup");
    const list = await su.backups.getFullList();
    assert.equal(list.length, 2);
    const named = list.find((b) => b.key === "before-upgrade.backup");
    assert.ok(named && named.size > 0 && /Z$/.test(named.modified), JSON.stringify(list));

    // Links take a short-lived file token, as in PocketBase; never the auth token.
    const fileToken = await su.files.getToken();
    const res = await fetch(su.backups.getDownloadURL(fileToken, named.key));
    assert.equal(res.status, 200);
    const bytes = new Uint8Array(await res.arrayBuffer());
    assert.equal(bytes.length, named.size);
    assert.equal(new TextDecoder().decode(bytes.slice(0, 13)), "BASALT-BACKUP");
    const withAuthToken = await fetch(su.backups.getDownloadURL(su.authStore.token, named.key));
    assert.equal(withAuthToken.status, 403);

    await assert.rejects(su.backups.restore(named.key), (e) => e instanceof ClientResponseError && e.status === 400);
    await assert.rejects(su.backups.create("../escape.backup"), (e) => e instanceof ClientResponseError && e.status === 400);
    await su.backups.delete(named.key);
    assert.equal((await su.backups.getFullList()).length, 1);
});
