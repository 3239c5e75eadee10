// Records through the SDK: CRUD, the list shape, filters, sort, expand,
// fields, skipTotal, getFullList over several pages, getFirstListItem,
// pb.filter escaping and ClientResponseError.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer } from "./lib/server.js";
import { ClientResponseError, adminWithoutRateLimits, client, createBlogCollections } from "./lib/sdk.js";

let server;
let su; // superuser client
let pb; // guest client (every rule of posts/authors is public)
let ann;
let bob;

before(async () => {
    server = await startServer();
    su = await adminWithoutRateLimits(server);
    await createBlogCollections(su);
    pb = client(server);
    ann = await pb.collection("authors").create({ name: "Ann", country: "NO" });
    bob = await pb.collection("authors").create({ name: "Bob", country: "SE" });
});

after(async () => {
    await server?.stop();
});

/** Asserts that `promise` rejects with a ClientResponseError and returns it. */
async function rejection(promise) {
    try {
        await promise;
    } catch (err) {
        assert.ok(err instanceof ClientResponseError, `expected a ClientResponseError, got ${err?.stack ?? err}`);
        return err;
    }
    assert.fail("expected the request to fail");
}

test("create, getOne, update (with the views+ modifier) and delete", async () => {
    const posts = pb.collection("posts");
    const created = await posts.create({ title: "crud", views: 1, author: ann.id });
    assert.equal(typeof created.id, "string");
    assert.equal(created.id.length, 15);
    assert.equal(created.collectionName, "posts");
    assert.equal(typeof created.collectionId, "string");
    assert.equal(created.title, "crud");
    assert.equal(created.views, 1);
    assert.equal(created.author, ann.id);
    assert.match(created.created, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.match(created.updated, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$/);

    const fetched = await posts.getOne(created.id);
    assert.deepEqual(fetched, created);

    const renamed = await posts.update(created.id, { title: "crud renamed" });
    assert.equal(renamed.title, "crud renamed");
    assert.equal(renamed.views, 1, "PATCH keeps the fields it does not name");

    const bumped = await posts.update(created.id, { "views+": 1 });
    assert.equal(bumped.views, 2);
    const again = await posts.update(created.id, { "views+": 5 });
    assert.equal(again.views, 7);
    const lowered = await posts.update(created.id, { "views-": 3 });
    assert.equal(lowered.views, 4);
    assert.equal((await posts.getOne(created.id)).views, 4);

    assert.equal(await posts.delete(created.id), true);
    const gone = await rejection(posts.getOne(created.id));
    assert.equal(gone.status, 404);
});

test("concurrent views+ updates all succeed and none is lost", async () => {
    // PocketBase answers every one of these PATCHes with 200 (SQLite
    // serialises the writes); Basalt additionally promises that no increment
    // is lost (ARCHITECTURE.md: "concurrent PATCHes never lose an increment").
    const posts = pb.collection("posts");
    const rec = await posts.create({ title: "counter", views: 0 });
    const n = 50;
    const results = await Promise.allSettled(
        Array.from({ length: n }, () => posts.update(rec.id, { "views+": 1 }, { requestKey: null })),
    );
    const failed = results.filter((r) => r.status === "rejected").map((r) => `${r.reason.status} ${r.reason.message}`);
    assert.deepEqual(failed, [], `${failed.length} of ${n} concurrent PATCH {"views+": 1} failed`);
    assert.equal((await posts.getOne(rec.id)).views, n);
});

test("getList returns PocketBase's list shape", async () => {
    const posts = pb.collection("posts");
    for (let i = 0; i < 7; i++) {
        await posts.create({ title: `shape-${i}`, views: i });
    }
    const page = await posts.getList(2, 3, { filter: "title ~ 'shape-'", sort: "views" });
    for (const key of ["page", "perPage", "totalItems", "totalPages"]) {
        assert.equal(typeof page[key], "number", `${key} in ${JSON.stringify(Object.keys(page))}`);
    }
    assert.ok(Array.isArray(page.items));
    assert.equal(page.page, 2);
    assert.equal(page.perPage, 3);
    assert.equal(page.totalItems, 7);
    assert.equal(page.totalPages, 3);
    assert.deepEqual(
        page.items.map((p) => p.title),
        ["shape-3", "shape-4", "shape-5"],
    );

    const last = await posts.getList(3, 3, { filter: "title ~ 'shape-'", sort: "views" });
    assert.deepEqual(
        last.items.map((p) => p.title),
        ["shape-6"],
    );
    const beyond = await posts.getList(9, 3, { filter: "title ~ 'shape-'" });
    assert.deepEqual(beyond.items, []);
    assert.equal(beyond.totalItems, 7);

    // skipTotal: the SDK sends skipTotal=true; totals are -1 as in PocketBase.
    const skipped = await posts.getList(1, 3, { filter: "title ~ 'shape-'", sort: "-views", skipTotal: true });
    assert.equal(skipped.totalItems, -1);
    assert.equal(skipped.totalPages, -1);
    assert.deepEqual(
        skipped.items.map((p) => p.views),
        [6, 5, 4],
    );

    // Defaults: page 1, 30 per page.
    const defaults = await posts.getList();
    assert.equal(defaults.page, 1);
    assert.equal(defaults.perPage, 30);
});

test("getList filters and sorts", async () => {
    const posts = pb.collection("posts");
    const rows = [
        { title: "flt alpha", views: 10, author: ann.id },
        { title: "flt beta", views: 20, author: bob.id },
        { title: "flt gamma", views: 30, author: ann.id },
        { title: "flt delta", views: 20 },
    ];
    for (const r of rows) await posts.create(r);
    const titles = async (filter, sort) =>
        (await posts.getList(1, 50, { filter, sort })).items.map((p) => p.title);

    assert.deepEqual(await titles("title ~ 'flt ' && views >= 20", "-views,title"), [
        "flt gamma",
        "flt beta",
        "flt delta",
    ]);
    assert.deepEqual(await titles("title ~ 'flt ' && (views = 10 || views = 30)", "views"), [
        "flt alpha",
        "flt gamma",
    ]);
    assert.deepEqual(await titles(`title ~ 'flt ' && author = '${bob.id}'`, "title"), ["flt beta"]);
    assert.deepEqual(await titles("title ~ 'flt ' && author.country = 'NO'", "-views"), ["flt gamma", "flt alpha"]);
    assert.deepEqual(await titles("title ~ 'flt ' && author = ''", ""), ["flt delta"]);
    assert.deepEqual(await titles("title ~ 'flt ' && views > 1000", ""), []);

    const bad = await rejection(posts.getList(1, 10, { filter: "views >" }));
    assert.equal(bad.status, 400);
    const badSort = await rejection(posts.getList(1, 10, { sort: "-" }));
    assert.equal(badSort.status, 400);
});

test("expand and fields on getList and getOne", async () => {
    const posts = pb.collection("posts");
    const post = await posts.create({ title: "exp one", views: 3, author: bob.id });

    const one = await posts.getOne(post.id, { expand: "author" });
    assert.equal(one.expand.author.id, bob.id);
    assert.equal(one.expand.author.name, "Bob");
    assert.equal(one.expand.author.collectionName, "authors");
    assert.equal((await posts.getOne(post.id)).expand, undefined, "no expand unless asked");

    const list = await posts.getList(1, 10, { filter: `id = '${post.id}'`, expand: "author" });
    assert.equal(list.items[0].expand.author.name, "Bob");

    // Back-relation from the author's side.
    const author = await pb.collection("authors").getOne(bob.id, { expand: "posts_via_author" });
    assert.ok(
        author.expand.posts_via_author.some((p) => p.id === post.id),
        JSON.stringify(author.expand),
    );

    const trimmed = await posts.getList(1, 10, { filter: `id = '${post.id}'`, fields: "id,title" });
    assert.deepEqual(trimmed.items, [{ id: post.id, title: "exp one" }]);
    assert.equal(trimmed.totalItems, 1);

    const nested = await posts.getOne(post.id, { expand: "author", fields: "title,expand.author.name" });
    assert.deepEqual(nested, { title: "exp one", expand: { author: { name: "Bob" } } });
});

test("getFullList fetches every record across several pages, sorted", async () => {
    await su.collections.create({
        name: "bulk",
        listRule: "",
        createRule: "",
        schema: { type: "object", properties: { n: { type: "integer" } }, required: ["n"] },
        indexes: [{ name: "by_n", fields: ["n"] }],
    });
    const bulk = pb.collection("bulk");
    const total = 1200;
    const order = Array.from({ length: total }, (_, i) => (i * 7919) % total); // a permutation
    for (let i = 0; i < total; i += 50) {
        await Promise.all(order.slice(i, i + 50).map((n) => bulk.create({ n }, { requestKey: null })));
    }

    const all = await bulk.getFullList({ sort: "n" });
    assert.equal(all.length, total);
    assert.deepEqual(
        all.map((r) => r.n),
        Array.from({ length: total }, (_, i) => i),
    );
    assert.equal(new Set(all.map((r) => r.id)).size, total);

    const down = await bulk.getFullList({ sort: "-n", batch: 500, filter: "n >= 100" });
    assert.equal(down.length, total - 100);
    assert.equal(down[0].n, total - 1);
    assert.equal(down.at(-1).n, 100);

    const counted = await bulk.getList(1, 1);
    assert.equal(counted.totalItems, total);
    assert.equal(counted.totalPages, total);
});

test("getFirstListItem returns the first match and a 404 when nothing matches", async () => {
    const posts = pb.collection("posts");
    await posts.create({ title: "first-a", views: 100 });
    const b = await posts.create({ title: "first-b", views: 200 });
    const found = await posts.getFirstListItem("title = 'first-b'");
    assert.equal(found.id, b.id);
    const best = await posts.getFirstListItem("title ~ 'first-'", { sort: "-views" });
    assert.equal(best.id, b.id);
    const withAuthor = await posts.getFirstListItem("title = 'first-b'", { expand: "author", fields: "id" });
    assert.deepEqual(withAuthor, { id: b.id });

    const none = await rejection(posts.getFirstListItem("title = 'no such title'"));
    assert.equal(none.status, 404);
});

test("pb.filter escapes parameters and round-trips them", async () => {
    const posts = pb.collection("posts");
    const tricky = `it's "quoted"`;
    const rec = await posts.create({ title: tricky, views: 4 });
    await posts.create({ title: tricky, views: 3 });
    await posts.create({ title: "its quoted", views: 9 });

    const filter = pb.filter("title = {:t} && views > {:v}", { t: tricky, v: 3 });
    // The SDK quotes strings as JSON: "it's \"quoted\"".
    assert.equal(filter, `title = "it's \\"quoted\\"" && views > 3`);
    const list = await posts.getList(1, 10, { filter });
    assert.deepEqual(
        list.items.map((p) => p.id),
        [rec.id],
    );
    assert.equal(list.items[0].title, tricky);

    // Values PocketBase's filter scanner round-trips (it unescapes only the
    // quote character, so backslashes and control characters are left out).
    const more = ["percent 100%", "ünïcødé ✓", "a'b'c", `"`, `'`, `""''`, "{:t}", "x && y || (z)"];
    for (const title of more) {
        const created = await posts.create({ title, views: 0 });
        const hit = await posts.getFirstListItem(pb.filter("title = {:title} && views = {:v}", { title, v: 0 }));
        assert.equal(hit.id, created.id, `round-trip of ${JSON.stringify(title)}`);
        assert.equal(hit.title, title);
        const like = await posts.getList(1, 100, { filter: pb.filter("title ~ {:title}", { title }) });
        assert.ok(
            like.items.some((p) => p.id === created.id),
            `~ round-trip of ${JSON.stringify(title)}`,
        );
    }
    // Dates are sent as "YYYY-MM-DD HH:MM:SS.sssZ", null as null.
    const dated = pb.filter("created < {:d} && created > {:past} && views != {:n}", {
        d: new Date("2100-01-01T00:00:00Z"),
        past: new Date("2000-01-01T00:00:00Z"),
        n: null,
    });
    assert.equal(dated, `created < "2100-01-01 00:00:00.000Z" && created > "2000-01-01 00:00:00.000Z" && views != null`);
    const page = await posts.getList(1, 1, { filter: pb.filter("id = {:id} && ", { id: rec.id }) + dated });
    assert.equal(page.totalItems, 1);
});

test("schema violations are ClientResponseError 400 with field codes", async () => {
    const posts = pb.collection("posts");
    const missing = await rejection(posts.create({ views: 1 }));
    assert.equal(missing.status, 400);
    assert.equal(missing.response.status, 400);
    assert.equal(typeof missing.response.message, "string");
    assert.equal(missing.response.data.title.code, "validation_required");
    assert.equal(missing.data.data.title.code, "validation_required", "err.data is an alias of err.response");

    const long = await rejection(posts.create({ title: "x".repeat(51) }));
    assert.equal(long.status, 400);
    assert.equal(long.response.data.title.code, "validation_max_length");

    const several = await rejection(posts.create({ views: -1, extra: true }));
    assert.equal(several.status, 400);
    assert.equal(several.response.data.title.code, "validation_required");
    assert.equal(several.response.data.views.code, "validation_min");
    assert.equal(several.response.data.extra.code, "validation_unknown_field");
    for (const field of ["title", "views", "extra"]) {
        assert.equal(typeof several.response.data[field].message, "string");
    }

    const ok = await posts.create({ title: "valid" });
    const badUpdate = await rejection(posts.update(ok.id, { title: "y".repeat(60) }));
    assert.equal(badUpdate.status, 400);
    assert.equal(badUpdate.response.data.title.code, "validation_max_length");
    assert.equal((await posts.getOne(ok.id)).title, "valid", "a refused update changes nothing");
});

test("a missing record is ClientResponseError 404", async () => {
    const posts = pb.collection("posts");
    for (const call of [
        () => posts.getOne("doesnotexist123"),
        () => posts.update("doesnotexist123", { title: "x" }),
        () => posts.delete("doesnotexist123"),
    ]) {
        const err = await rejection(call());
        assert.equal(err.status, 404);
        assert.equal(err.response.status, 404);
        assert.equal(typeof err.response.message, "string");
        assert.deepEqual(err.response.data, {});
        assert.match(err.url, /\/api\/collections\/posts\/records\/doesnotexist123/);
        assert.equal(err.isAbort, false);
    }
    const noCollection = await rejection(pb.collection("nope").getList());
    assert.equal(noCollection.status, 404);
});
