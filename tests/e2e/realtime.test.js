// Realtime through the SDK (SSE, with the `eventsource` package as Node's
// EventSource): collection and record subscriptions, options, rules,
// unsubscribe, PB_CONNECT, and reconnecting after a server restart.
//
// Ordering argument used below: all of one client's subscriptions share one
// SSE stream and the server sends changes in commit order, so once an event
// for a later write has arrived, every event for an earlier write that was
// going to arrive has arrived too.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer } from "./lib/server.js";
import { Inbox, adminWithoutRateLimits, client, createBlogCollections, within } from "./lib/sdk.js";

const EVENT_MS = 5000;

let server;
let su; // superuser client, used as the writer
const clients = []; // subscriber clients, disconnected after the suite

before(async () => {
    server = await startServer();
    su = await adminWithoutRateLimits(server);
    await createBlogCollections(su);
});

after(async () => {
    for (const pb of clients) {
        await pb.realtime.unsubscribe().catch(() => {});
    }
    await server?.stop();
});

function subscriber() {
    const pb = client(server);
    clients.push(pb);
    return pb;
}

test("subscribe('*') receives create, update and delete events", async () => {
    const pb = subscriber();
    const inbox = new Inbox();
    const unsubscribe = await pb.collection("posts").subscribe("*", inbox.push);
    assert.equal(pb.realtime.isConnected, true);
    assert.equal(typeof pb.realtime.clientId, "string");
    assert.ok(pb.realtime.clientId.length > 0);

    const post = await su.collection("posts").create({ title: "rt create", views: 1 });
    const created = await inbox.next(EVENT_MS, "the create event");
    assert.equal(created.action, "create");
    assert.equal(created.record.id, post.id);
    assert.equal(created.record.title, "rt create");
    assert.equal(created.record.views, 1);
    assert.equal(created.record.collectionName, "posts");
    assert.equal(created.record.collectionId, post.collectionId);
    assert.equal(created.record.created, post.created);

    await su.collection("posts").update(post.id, { "views+": 1 });
    const updated = await inbox.next(EVENT_MS, "the update event");
    assert.equal(updated.action, "update");
    assert.equal(updated.record.id, post.id);
    assert.equal(updated.record.views, 2);

    await su.collection("posts").delete(post.id);
    const deleted = await inbox.next(EVENT_MS, "the delete event");
    assert.equal(deleted.action, "delete");
    assert.equal(deleted.record.id, post.id);
    assert.equal(deleted.record.title, "rt create");

    // Writes by a guest client reach the subscriber too.
    const guest = client(server);
    const other = await guest.collection("posts").create({ title: "rt guest" });
    const e = await inbox.next(EVENT_MS, "the guest's create event");
    assert.deepEqual([e.action, e.record.id], ["create", other.id]);
    assert.equal(inbox.pending, 0);

    await unsubscribe();
    assert.equal(pb.realtime.isConnected, false, "the last unsubscribe closes the connection");
});

test("subscribe(id) receives only that record's events", async () => {
    const pb = subscriber();
    const a = await su.collection("posts").create({ title: "rt a", views: 0 });
    const b = await su.collection("posts").create({ title: "rt b", views: 0 });
    const onlyA = new Inbox();
    const all = new Inbox();
    await pb.collection("posts").subscribe(a.id, onlyA.push);
    await pb.collection("posts").subscribe("*", all.push);

    await su.collection("posts").update(b.id, { title: "rt b2" });
    await su.collection("posts").update(a.id, { title: "rt a2" });
    const first = await onlyA.next(EVENT_MS, "the update of a");
    assert.deepEqual([first.action, first.record.id, first.record.title], ["update", a.id, "rt a2"]);
    const seen = [await all.next(EVENT_MS), await all.next(EVENT_MS)];
    assert.deepEqual(
        seen.map((e) => [e.action, e.record.id]),
        [
            ["update", b.id],
            ["update", a.id],
        ],
    );

    await su.collection("posts").delete(b.id);
    await su.collection("posts").delete(a.id);
    const gone = await onlyA.next(EVENT_MS, "the delete of a");
    assert.deepEqual([gone.action, gone.record.id], ["delete", a.id]);
    await all.until((e) => e.action === "delete" && e.record.id === a.id, EVENT_MS);
    assert.equal(onlyA.pending, 0, "nothing about b reached the record subscription");

    await pb.collection("posts").unsubscribe();
});

test("unsubscribe() stops delivery", async () => {
    const pb = subscriber();
    const posts = new Inbox();
    const authors = new Inbox();
    await pb.collection("posts").subscribe("*", posts.push);
    await pb.collection("authors").subscribe("*", authors.push);

    await su.collection("posts").create({ title: "rt before" });
    assert.equal((await posts.next(EVENT_MS)).record.title, "rt before");

    // Topic by topic: posts stops, authors (same connection) goes on.
    await pb.collection("posts").unsubscribe("*");
    assert.equal(pb.realtime.isConnected, true);
    await su.collection("posts").create({ title: "rt after" });
    const marker = await su.collection("authors").create({ name: "Marker" });
    assert.equal((await authors.next(EVENT_MS, "the marker event")).record.id, marker.id);
    assert.equal(posts.pending, 0, "no posts event after unsubscribe('*')");

    // The function returned by subscribe removes just that listener.
    const second = new Inbox();
    const unsubscribeSecond = await pb.collection("authors").subscribe("*", second.push);
    await unsubscribeSecond();
    const m2 = await su.collection("authors").create({ name: "Marker 2" });
    assert.equal((await authors.next(EVENT_MS)).record.id, m2.id);
    assert.equal(second.pending, 0);

    // Everything: the SDK closes the connection.
    await pb.collection("authors").unsubscribe();
    assert.equal(pb.realtime.isConnected, false);
    await su.collection("authors").create({ name: "Unseen" });
    // A fresh subscriber proves the write was published; the old one stays silent.
    const probe = subscriber();
    const probed = new Inbox();
    await probe.collection("authors").subscribe("*", probed.push);
    const m3 = await su.collection("authors").create({ name: "Marker 3" });
    assert.equal((await probed.next(EVENT_MS)).record.id, m3.id);
    assert.equal(authors.pending, 0);
    await probe.realtime.unsubscribe();
});

test("subscription options: filter, expand and fields", async () => {
    const pb = subscriber();
    const author = await su.collection("authors").create({ name: "Opt" });
    const big = new Inbox();
    const shaped = new Inbox();
    await pb.collection("posts").subscribe("*", big.push, { filter: "views > 10" });
    await pb.collection("posts").subscribe("*", shaped.push, { expand: "author", fields: "id,title,expand.author.name" });

    const small = await su.collection("posts").create({ title: "rt small", views: 1, author: author.id });
    const large = await su.collection("posts").create({ title: "rt large", views: 50, author: author.id });
    const e = await big.next(EVENT_MS, "the filtered event");
    assert.deepEqual([e.action, e.record.id], ["create", large.id]);

    const s1 = await shaped.next(EVENT_MS);
    const s2 = await shaped.next(EVENT_MS);
    assert.deepEqual(s1.record, { id: small.id, title: "rt small", expand: { author: { name: "Opt" } } });
    assert.deepEqual(s2.record, { id: large.id, title: "rt large", expand: { author: { name: "Opt" } } });
    assert.equal(big.pending, 0);
    await pb.realtime.unsubscribe();
});

test("events follow the collection's rules for the subscriber's auth", async () => {
    await su.collections.create({
        name: "notes",
        listRule: "owner = @request.auth.id",
        viewRule: "owner = @request.auth.id",
        schema: {
            type: "object",
            properties: { owner: { type: "string", "x-relation": { collection: "users" } }, text: { type: "string" } },
        },
    });
    const ids = [];
    for (const email of ["rt-a@example.com", "rt-b@example.com"]) {
        const u = await client(server)
            .collection("users")
            .create({ email, password: "password-1", passwordConfirm: "password-1" });
        ids.push(u.id);
    }
    const pb = subscriber();
    await pb.collection("users").authWithPassword("rt-a@example.com", "password-1");
    const mine = new Inbox();
    await pb.collection("notes").subscribe("*", mine.push);
    const guest = subscriber();
    const guestNotes = new Inbox();
    const guestPosts = new Inbox();
    await guest.collection("notes").subscribe("*", guestNotes.push);
    await guest.collection("posts").subscribe("*", guestPosts.push);

    await su.collection("notes").create({ owner: ids[1], text: "B's" });
    const own = await su.collection("notes").create({ owner: ids[0], text: "A's" });
    const e = await mine.next(EVENT_MS, "A's note");
    assert.deepEqual([e.action, e.record.id, e.record.text], ["create", own.id, "A's"]);
    const marker = await su.collection("posts").create({ title: "rt marker" });
    assert.equal((await guestPosts.next(EVENT_MS)).record.id, marker.id);
    assert.equal(guestNotes.pending, 0, "a guest sees no owner-only note");
    assert.equal(mine.pending, 0, "A does not see B's note");
    await pb.realtime.unsubscribe();
    await guest.realtime.unsubscribe();
});

test("pb.realtime.subscribe('PB_CONNECT') reports the connection", async () => {
    // The PocketBase docs' way to learn about (re)connects: PB_CONNECT is
    // sent to the server as a subscription like any other topic, and
    // PocketBase accepts any topic string (unknown ones just never match).
    const pb = subscriber();
    const connects = new Inbox();
    const unsubscribe = await within(
        EVENT_MS,
        pb.realtime.subscribe("PB_CONNECT", connects.push),
        "subscribe('PB_CONNECT') to resolve",
    );
    const e = await connects.next(EVENT_MS, "PB_CONNECT");
    assert.equal(e.clientId, pb.realtime.clientId);

    // Alongside a record subscription on the same connection.
    const posts = new Inbox();
    await pb.collection("posts").subscribe("*", posts.push);
    const p = await su.collection("posts").create({ title: "rt with PB_CONNECT" });
    assert.equal((await posts.next(EVENT_MS)).record.id, p.id);
    await unsubscribe();
    await pb.realtime.unsubscribe();
});

test("a custom (non-collection) topic does not break the subscription set", async () => {
    // PocketBase stores any topic (apps broadcast custom messages to them,
    // and the SDK's authWithOAuth2 subscribes to "@oauth2").
    const pb = subscriber();
    const custom = new Inbox();
    const posts = new Inbox();
    await within(EVENT_MS, pb.realtime.subscribe("my-custom-topic", custom.push), "subscribe(custom topic)");
    await pb.collection("posts").subscribe("*", posts.push);
    const p = await su.collection("posts").create({ title: "rt with custom topic" });
    assert.equal((await posts.next(EVENT_MS)).record.id, p.id);
    assert.equal(custom.pending, 0);
    await pb.realtime.unsubscribe();
});

test("after a server restart the SDK reconnects and receives events again", async () => {
    const pb = subscriber();
    const inbox = new Inbox();
    const disconnects = new Inbox();
    pb.realtime.onDisconnect = disconnects.push;
    await pb.collection("posts").subscribe("*", inbox.push);
    const before = await su.collection("posts").create({ title: "rt before restart" });
    assert.equal((await inbox.next(EVENT_MS)).record.id, before.id);
    const firstClientId = pb.realtime.clientId;

    // Same data dir, same port. (How the stop itself went is the next test's
    // subject; here a slow stop is cut short with SIGKILL after 5 s.)
    await server.restart({ stopTimeoutMs: 5000 });

    const active = await disconnects.next(15_000, "onDisconnect");
    assert.deepEqual(active, ["posts/*"], "onDisconnect reports the subscriptions still wanted");

    // The SDK retries with backoff (200 ms … 2 s). Until it has resubscribed,
    // writes are not delivered: probe with one write per second until one
    // arrives, for up to 15 s. The superuser token survives the restart.
    const deadline = Date.now() + 15_000;
    let probe;
    for (let i = 0; !probe; i++) {
        const p = await su.collection("posts").create({ title: `rt probe ${i}` });
        try {
            probe = await inbox.until((e) => e.record?.id === p.id, 1000, `probe ${i}`);
        } catch (err) {
            if (Date.now() > deadline) throw new Error(`no event within 15 s of the restart: ${err.message}`);
        }
    }
    assert.equal(probe.action, "create");
    assert.equal(pb.realtime.isConnected, true);
    assert.notEqual(pb.realtime.clientId, firstClientId, "a new connection");

    // A working subscription again: update and delete arrive too.
    await su.collection("posts").update(probe.record.id, { views: 7 });
    const u = await inbox.until((e) => e.record?.id === probe.record.id, EVENT_MS);
    assert.deepEqual([u.action, u.record.views], ["update", 7]);
    await su.collection("posts").delete(probe.record.id);
    const d = await inbox.until((e) => e.record?.id === probe.record.id, EVENT_MS);
    assert.equal(d.action, "delete");
    assert.equal((await su.collection("posts").getOne(before.id)).title, "rt before restart", "data kept");
    await pb.realtime.unsubscribe();
});

test("SIGTERM with a realtime client connected stops the server gracefully and promptly", async () => {
    // README: SIGTERM finishes in-flight requests and exits 0. An SSE stream
    // never finishes by itself; PocketBase cancels realtime connections when
    // it shuts down (and gives the rest 1 s), so a restart is quick.
    const pb = subscriber();
    const inbox = new Inbox();
    await pb.collection("posts").subscribe("*", inbox.push);
    const { code, signal, stopMs } = await server.restart({ stopTimeoutMs: 5000 });
    assert.deepEqual(
        { code, signal },
        { code: 0, signal: null },
        `the server did not exit by itself within 5 s of SIGTERM (took ${stopMs} ms)`,
    );
    assert.ok(stopMs < 5000, `stop took ${stopMs} ms`);
});
