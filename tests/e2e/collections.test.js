// Collection management through the SDK in PocketBase's format:
// pb.collections.create/update/import/getFullList/getList(filter, sort)/
// truncate/getScaffolds with `fields`, as PocketBase tools and migrations
// call them. Every answer carries both `fields` and Basalt's `schema`.

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

const PUBLIC = { listRule: "", viewRule: "", createRule: "", updateRule: "", deleteRule: "" };
const fieldNamed = (c, name) => c.fields.find((f) => f.name === name);

async function rejection(promise) {
    try {
        await promise;
    } catch (err) {
        assert.ok(err instanceof ClientResponseError, `expected a ClientResponseError, got ${err?.stack ?? err}`);
        return err;
    }
    assert.fail("expected the request to fail");
}

test("create and update with PocketBase fields; both views come back", async () => {
    const users = await su.collections.getOne("users");
    const c = await su.collections.create({
        name: "books",
        type: "base",
        ...PUBLIC,
        fields: [
            { name: "title", type: "text", required: true, max: 40 },
            { name: "pages", type: "number", onlyInt: true, min: 1 },
            { name: "genre", type: "select", values: ["sf", "crime"], maxSelect: 1 },
            { name: "reader", type: "relation", collectionId: users.id, maxSelect: 1 },
            { name: "created", type: "autodate", onCreate: true },
            { name: "updated", type: "autodate", onCreate: true, onUpdate: true },
        ],
        indexes: ["CREATE INDEX `idx_books_pages` ON `books` (`pages`)"],
    });
    assert.equal(c.schema.properties.title.maxLength, 40);
    assert.deepEqual(c.schema.required, ["title"]);
    assert.equal(fieldNamed(c, "pages").onlyInt, true);
    assert.equal(fieldNamed(c, "reader").collectionId, users.id);
    assert.deepEqual(c.indexes, [{ name: "idx_books_pages", fields: ["pages"], unique: false }]);

    // Records follow the mapped fields.
    const books = su.collection("books");
    await books.create({ title: "Dune", pages: 412, genre: "sf" });
    const err = await rejection(books.create({ title: "", pages: 1.5, genre: "poetry" }));
    assert.equal(err.status, 400);
    assert.equal(err.response.data.title.code, "validation_required");
    assert.ok(err.response.data.pages);
    assert.ok(err.response.data.genre);

    // Read, change one field, write everything back (as the dashboard of PocketBase does).
    const read = await su.collections.getOne("books");
    fieldNamed(read, "title").max = 80;
    read.fields.push({ name: "isbn", type: "text", pattern: "^[0-9-]+$" });
    const updated = await su.collections.update("books", read);
    assert.equal(updated.schema.properties.title.maxLength, 80);
    assert.equal(fieldNamed(updated, "isbn").pattern, "^[0-9-]+$");
    await rejection(books.create({ title: "x", isbn: "abc" }));
});

test("a bad file field option or a bad index is a clear 400", async () => {
    let err = await rejection(su.collections.create({ name: "docs", fields: [{ name: "scan", type: "file", thumbs: ["huge"] }] }));
    assert.equal(err.status, 400);
    assert.match(err.response.data["fields.0.thumbs"].message, /huge/);
    err = await rejection(su.collections.create({ name: "docs", indexes: ["CREATE INDEX i ON docs (lower(x))"] }));
    assert.equal(err.status, 400);
    assert.ok(err.response.data["indexes.0"]);
});

test("import, getFullList, getList with filter and sort, truncate, scaffolds", async () => {
    await su.collections.import(
        [
            { id: "pbc_shelf", name: "shelves", type: "base", ...PUBLIC, fields: [{ name: "label", type: "text" }] },
            {
                id: "pbc_item",
                name: "items",
                type: "base",
                ...PUBLIC,
                fields: [{ name: "shelf", type: "relation", collectionId: "pbc_shelf", cascadeDelete: true, maxSelect: 1 }],
            },
        ],
        false,
    );
    const all = await su.collections.getFullList();
    const names = all.map((c) => c.name);
    assert.ok(names.includes("shelves") && names.includes("items"), names.join(","));
    assert.ok(all.every((c) => Array.isArray(c.fields) && c.schema), "every collection has both views");

    const page = await su.collections.getList(1, 10, { filter: "name ~ 'e' && type = 'base'", sort: "-name" });
    const listed = page.items.map((c) => c.name);
    assert.deepEqual(listed, [...listed].sort().reverse());
    assert.ok(listed.includes("shelves") && !listed.includes("users"));

    const shelf = await su.collection("shelves").create({ label: "A" });
    await su.collection("items").create({ shelf: shelf.id });
    await su.collections.truncate("shelves");
    assert.equal((await su.collection("shelves").getList(1, 1)).totalItems, 0);
    assert.equal((await su.collection("items").getList(1, 1)).totalItems, 0, "cascade");

    const scaffolds = await su.collections.getScaffolds();
    assert.deepEqual(Object.keys(scaffolds).sort(), ["auth", "base", "view"]);
    assert.equal(scaffolds.auth.fields.find((f) => f.name === "email").type, "email");

    // Guests get nowhere.
    const guest = client(server);
    assert.equal((await rejection(guest.collections.getFullList())).status, 401);
    assert.equal((await rejection(guest.collections.truncate("shelves"))).status, 401);
});
