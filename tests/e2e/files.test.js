// Files through the SDK: `FormData` with `File`/`Blob` parts and plain
// objects holding `File`s, `docs+`/`docs-`, `pb.files.getURL` with thumbs
// and download, protected files with `pb.files.getToken()`, and realtime
// events carrying the stored names.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer } from "./lib/server.js";
import { ClientResponseError, PocketBase, adminWithoutRateLimits, client } from "./lib/sdk.js";

let server;
let su;
let pb;

// A 2x1 PNG (one red, one blue pixel).
const PNG = Buffer.from(
    "89504e470d0a1a0a0000000d49484452000000020000000108020000007b40e8dd" +
        "0000000d49444154789c63f8cf0004ff01070001ffe2239e590000000049454e44ae426082",
    "hex",
);

before(async () => {
    server = await startServer();
    su = await adminWithoutRateLimits(server);
    const users = await su.collections.getOne("users");
    await su.collections.create({
        name: "photos",
        type: "base",
        listRule: "",
        viewRule: "",
        createRule: "",
        updateRule: "",
        deleteRule: "",
        fields: [
            { name: "title", type: "text" },
            { name: "image", type: "file", maxSelect: 1, maxSize: 100000, mimeTypes: ["image/png"], thumbs: ["1x1", "2x0"] },
            { name: "docs", type: "file", maxSelect: 5, maxSize: 100000 },
        ],
    });
    await su.collections.create({
        name: "secrets",
        type: "base",
        listRule: "owner = @request.auth.id",
        viewRule: "owner = @request.auth.id",
        createRule: "owner = @request.auth.id",
        fields: [
            { name: "owner", type: "relation", collectionId: users.id, maxSelect: 1 },
            { name: "doc", type: "file", maxSelect: 1, protected: true },
        ],
    });
    pb = client(server);
});

after(async () => {
    await server?.stop();
});

async function rejection(promise) {
    try {
        await promise;
    } catch (err) {
        assert.ok(err instanceof ClientResponseError, `expected a ClientResponseError, got ${err?.stack ?? err}`);
        return err;
    }
    assert.fail("expected the request to fail");
}

test("create with FormData (File and Blob parts), update with docs+ and docs-, clear", async () => {
    const photos = pb.collection("photos");
    const form = new FormData();
    form.append("title", "form");
    form.append("image", new Blob([PNG], { type: "image/png" }), "Red Blue.png");
    form.append("docs", new File(["one"], "one.txt"));
    form.append("docs", new File(["two"], "two.txt"));
    const rec = await photos.create(form);
    assert.equal(rec.title, "form");
    assert.match(rec.image, /^red_blue_[a-z0-9]{10}\.png$/);
    assert.equal(rec.docs.length, 2);
    assert.match(rec.docs[0], /^one_[a-z0-9]{10}\.txt$/);

    // A plain object holding Files (the SDK builds the FormData itself).
    const more = await photos.update(rec.id, { "docs+": [new File(["three"], "three.txt")], "docs-": [rec.docs[0]] });
    assert.deepEqual(more.docs.slice(0, 1), [rec.docs[1]]);
    assert.equal(more.docs.length, 2);
    const cleared = await photos.update(rec.id, { image: null, docs: [] });
    assert.equal(cleared.image, "");
    assert.deepEqual(cleared.docs, []);
});

test("limits and foreign names are 400s under the field", async () => {
    const photos = pb.collection("photos");
    let err = await rejection(photos.create({ image: new File(["not an image"], "x.png") }));
    assert.equal(err.status, 400);
    assert.equal(err.response.data.image.code, "validation_invalid_mime_type");
    err = await rejection(photos.create({ docs: [new File([Buffer.alloc(100001, 1)], "big.bin")] }));
    assert.equal(err.response.data.docs.code, "validation_file_size_limit");
    err = await rejection(photos.create({ docs: ["../../etc/passwd"] }));
    assert.equal(err.response.data.docs.code, "validation_invalid_file");
});

test("pb.files.getURL serves the original, thumbnails and downloads", async () => {
    const rec = await pb.collection("photos").create({ image: new File([PNG], "rb.png"), docs: [new File(["hello"], "hi.txt")] });
    const original = await fetch(pb.files.getURL(rec, rec.image));
    assert.equal(original.status, 200);
    assert.ok(Buffer.from(await original.arrayBuffer()).equals(PNG));
    assert.equal(original.headers.get("x-content-type-options"), "nosniff");
    for (const thumb of ["1x1", "2x0"]) {
        const res = await fetch(pb.files.getURL(rec, rec.image, { thumb }));
        assert.equal(res.status, 200, thumb);
        assert.equal(res.headers.get("content-type"), "image/png", thumb);
        const body = Buffer.from(await res.arrayBuffer());
        // PNG IHDR: width and height at bytes 16..24.
        const [w, h] = [body.readUInt32BE(16), body.readUInt32BE(20)];
        assert.deepEqual([w, h], thumb === "1x1" ? [1, 1] : [2, 1], thumb);
    }
    const download = await fetch(pb.files.getURL(rec, rec.docs[0], { download: true }));
    assert.equal(await download.text(), "hello");
    assert.match(download.headers.get("content-disposition") ?? "", /^attachment/);
});

test("protected files need pb.files.getToken() and the viewRule", async () => {
    const users = pb.collection("users");
    const amy = new PocketBase(server.url);
    const ben = new PocketBase(server.url);
    for (const [c, email] of [
        [amy, "amy.files@example.com"],
        [ben, "ben.files@example.com"],
    ]) {
        await users.create({ email, password: "password-123", passwordConfirm: "password-123" });
        await c.collection("users").authWithPassword(email, "password-123");
    }
    const rec = await amy
        .collection("secrets")
        .create({ owner: amy.authStore.record.id, doc: new File(["top secret"], "plan.txt") });
    const url = (c, token) => c.files.getURL(rec, rec.doc, token ? { token } : {});
    assert.equal((await fetch(url(amy))).status, 404, "no token");
    const amyToken = await amy.files.getToken();
    const ok = await fetch(url(amy, amyToken));
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), "top secret");
    const benToken = await ben.files.getToken();
    assert.equal((await fetch(url(ben, benToken))).status, 404, "ben's token, amy's record");
    const suToken = await su.files.getToken();
    assert.equal((await fetch(url(su, suToken))).status, 200, "superuser");
});
