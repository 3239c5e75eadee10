// The admin dashboard in a real browser (headless Debian Chromium through
// playwright-core): log in, build a collection, manage its records, watch
// the live feed, and check that stored markup stays text.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import PocketBase from "pocketbase";

import { startServer, SU_EMAIL, SU_PASSWORD } from "./lib/server.js";
import { createRequire } from "node:module";

import { launch, newPage, shot } from "./lib/browser.js";

const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

let server;
let browser;
let pb;

before(async () => {
    server = await startServer();
    browser = await launch();
    pb = new PocketBase(server.url);
    await pb.collection("_superusers").authWithPassword(SU_EMAIL, SU_PASSWORD);
    await pb.settings.update({ rateLimits: { enabled: false } });
});

after(async () => {
    await browser?.close();
    await server?.stop();
});

/** Logs in through the form using only the keyboard. */
async function login(page) {
    await page.goto(`${server.url}/_/`);
    assert.match(page.url(), /\/_\/login/);
    // The email field takes the focus on load (autofocus).
    await page.waitForFunction(() => document.activeElement && document.activeElement.name === "email");
    await page.keyboard.type(SU_EMAIL);
    await page.keyboard.press("Tab");
    await page.keyboard.type(SU_PASSWORD);
    await page.keyboard.press("Enter");
    try {
        await page.waitForURL(/\/_\/collections$/, { timeout: 10_000 });
    } catch (err) {
        await shot(page, "failed-login");
        throw new Error(`login did not reach the collections page (${page.url()}): ${await page.locator("main").innerText()}`);
    }
}

test("login page, keyboard login, logout", async () => {
    const page = await newPage(browser);
    await page.goto(`${server.url}/_/login`);
    await shot(page, "01-login");
    await page.fill('input[name="email"]', SU_EMAIL);
    await page.fill('input[name="password"]', "wrong password");
    await page.click('button[type="submit"]');
    await page.getByText("Wrong email or password.").waitFor();
    await login(page);
    // Keyboard: the first Tab reaches the skip link, which moves the focus
    // to the page's content.
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
    await page.keyboard.press("Enter");
    assert.equal(await page.evaluate(() => document.activeElement.id), "main");
    await page.getByRole("button", { name: "Log out" }).click();
    await page.waitForURL(/\/_\/login$/);
    await page.goto(`${server.url}/_/collections`);
    assert.match(page.url(), /\/_\/login/, "logged out: back to the login page");
    assert.deepEqual(page.problems, []);
    await page.context().close();
});

const SCHEMA = {
    type: "object",
    properties: {
        title: { type: "string", maxLength: 200, description: "Shown in lists" },
        views: { type: "integer", minimum: 0 },
        status: { type: "string", enum: ["draft", "published"] },
        featured: { type: "boolean" },
        published_at: { type: "string", format: "date-time" },
        tags: { type: "array", items: { type: "string" } },
    },
    required: ["title"],
    additionalProperties: false,
};

test("a new user's journey: collection, record form, table, filter, edit, live feed, delete", async () => {
    const page = await newPage(browser);
    await login(page);
    await shot(page, "02-collections");

    // A collection with a JSON Schema, made in the dashboard.
    await page.getByRole("link", { name: "New collection" }).first().click();
    await page.waitForURL(/\/_\/collections\/new$/);
    await page.fill('input[name="name"]', "articles");
    // A syntax error is flagged while typing, before anything is sent.
    await page.fill('textarea[name="schema"]', '{"type": "object",');
    await page.locator(".json-status.bad").first().waitFor();
    await page.fill('textarea[name="schema"]', JSON.stringify(SCHEMA, null, 2));
    await page.locator(".json-status.ok").first().waitFor();
    for (const rule of ["listRule", "viewRule"]) {
        await page.selectOption(`select[name="${rule}_mode"]`, "public");
    }
    await shot(page, "03-collection-new", { fullPage: false });
    await page.getByRole("button", { name: "Create collection" }).click();
    await page.waitForURL(/\/_\/collections\/articles$/);
    const created = await pb.collections.getOne("articles");
    assert.deepEqual(created.schema.required, ["title"]);
    assert.equal(created.listRule, "");
    assert.equal(created.createRule, null);
    await shot(page, "04-collection-edit", { fullPage: false });

    // A record through the form generated from the schema.
    await page.goto(`${server.url}/_/collections/articles/records`);
    await page.getByText("No records yet").first().waitFor();
    await page.getByRole("link", { name: "New record" }).first().click();
    await page.fill('input[name="title"]', "<script>alert('xss')</script>First post");
    await page.fill('input[name="views"]', "42");
    await page.selectOption('select[name="status"]', "published");
    await page.check('input[name="featured"][type="checkbox"]');
    await page.fill('input[name="published_at"]', "2026-11-28T10:30:00");
    await page.fill('textarea[name="tags"]', '["rust", "baas"]');
    await shot(page, "05-record-form");
    await page.getByRole("button", { name: "Create record" }).click();
    await page.waitForURL((u) => !u.pathname.endsWith("/new"));
    const [rec] = (await pb.collection("articles").getFullList());
    assert.equal(rec.title, "<script>alert('xss')</script>First post");
    assert.equal(rec.views, 42);
    assert.equal(rec.status, "published");
    assert.equal(rec.featured, true);
    assert.deepEqual(rec.tags, ["rust", "baas"]);
    assert.match(rec.published_at, /^2026-11-28T10:30:00(\.000)?Z$/);

    // A second record through the REST API; both are in the table.
    const other = await pb.collection("articles").create({ title: "Second", views: 7 });
    await page.goto(`${server.url}/_/collections/articles/records`);
    const table = page.locator("table");
    await table.getByText("Second").waitFor();
    // Stored markup is shown as text, never run (an alert would fail the test).
    await table.getByText("<script>alert('xss')</script>First post").waitFor();
    await shot(page, "06-records");

    // Filter with the real filter language; a bad filter explains itself.
    await page.fill('input[name="filter"]', "views >");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.locator(".flash-error, .field-error").first().waitFor();
    await page.fill('input[name="filter"]', "views > 10");
    await page.getByRole("button", { name: "Apply" }).click();
    await table.getByText("First post").waitFor();
    assert.equal(await table.getByText("Second").count(), 0, "filtered out");

    // Sort by clicking a header (twice: descending).
    await page.goto(`${server.url}/_/collections/articles/records`);
    await page.locator("th a", { hasText: "views" }).click();
    await page.locator('th[aria-sort="ascending"]').waitFor();
    const firstRow = async () => (await page.locator("tbody tr").first().textContent()) || "";
    assert.match(await firstRow(), /Second/);
    await page.locator("th a", { hasText: "views" }).click();
    await page.locator('th[aria-sort="descending"]').waitFor();
    assert.match(await firstRow(), /First post/);

    // Edit the record in its form.
    await page.locator(`a[data-record-id="${rec.id}"]`).click();
    await page.fill('input[name="views"]', "43");
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.locator(".flash-ok").first().waitFor();
    assert.equal((await pb.collection("articles").getOne(rec.id)).views, 43);

    // The live feed receives a change made through the REST API.
    await page.goto(`${server.url}/_/live?collection=articles`);
    await page.getByText("Connected: waiting for changes").waitFor({ timeout: 10_000 });
    await pb.collection("articles").update(other.id, { views: 8 });
    await page.locator(`#feed li.fresh:has(code:text-is("${other.id}"))`).waitFor({ timeout: 10_000 });

    // Delete through the record page (confirmed).
    await page.goto(`${server.url}/_/collections/articles/records/${other.id}`);
    await page.getByRole("button", { name: "Delete this record" }).click();
    await page.waitForURL(/\/_\/collections\/articles\/records(\?.*)?$/);
    await assert.rejects(pb.collection("articles").getOne(other.id), (e) => e.status === 404);
    assert.equal(await page.locator(`a[data-record-id="${other.id}"]`).count(), 0);

    assert.deepEqual(page.problems, []);
    await page.context().close();
});

// A valid 1x1 PNG.
const PNG = Buffer.from(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000b494441" +
        "54789c6360000200000500017a5eab3f0000000049454e44ae426082",
    "hex",
);

test("files: upload through the record form, thumbnail and names in the form and table, remove", async () => {
    await pb.collections.create({
        name: "gallery",
        schema: {
            type: "object",
            properties: {
                title: { type: "string", maxLength: 100 },
                photo: { type: "string", "x-file": { maxSize: 100000, mimeTypes: ["image/png", "image/jpeg"] } },
                docs: { type: "array", items: { type: "string" }, "x-file": { maxSelect: 5 } },
            },
            additionalProperties: false,
        },
    });
    const page = await newPage(browser);
    await login(page);
    await page.goto(`${server.url}/_/collections/gallery/records/new`);
    await page.fill('input[name="title"]', "holiday");
    await page.setInputFiles('input[type="file"][name="photo"]', { name: "beach.png", mimeType: "image/png", buffer: PNG });
    await page.setInputFiles('input[type="file"][name="docs+"]', [
        { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("sand and sea") },
        { name: "plan.txt", mimeType: "text/plain", buffer: Buffer.from("day one") },
    ]);
    await shot(page, "12-record-files-new", { fullPage: false });
    await page.getByRole("button", { name: "Create record" }).click();
    await page.waitForURL((u) => !u.pathname.endsWith("/new"));
    await page.locator(".flash-ok").first().waitFor();
    const [rec] = await pb.collection("gallery").getFullList();
    assert.match(rec.photo, /^beach_[a-z0-9]{10}\.png$/);
    assert.equal(rec.docs.length, 2);
    assert.match(rec.docs[0], /^notes_[a-z0-9]{10}\.txt$/);

    // The record page: the image's thumbnail, the text files by name, links to open them.
    const url = `/api/files/${rec.collectionId}/${rec.id}`;
    assert.equal(await page.locator(`img.thumb[src="${url}/${rec.photo}?thumb=100x100"]`).count(), 1);
    await page.locator(`a[href="${url}/${rec.docs[0]}"]`, { hasText: rec.docs[0] }).waitFor();
    assert.equal(await page.locator(`img[src*="${rec.docs[0]}"]`).count(), 0, "no thumbnail for a text file");
    await shot(page, "13-record-files", { fullPage: false });

    // The table: a small thumbnail for the image, names for the rest.
    await page.goto(`${server.url}/_/collections/gallery/records?cols=title,photo,docs`);
    const row = page.locator(`tr:has(a[data-record-id="${rec.id}"])`);
    assert.equal(await row.locator(`td.files img[alt="${rec.photo}"]`).count(), 1);
    await row.locator("td.files .file-name", { hasText: rec.docs[1] }).waitFor();
    await shot(page, "14-records-files", { fullPage: false });

    // Remove one document and the photo with their boxes; dropping a file on
    // the multiple field's box adds it.
    await page.goto(`${server.url}/_/collections/gallery/records/${rec.id}`);
    await page.check(`input[name="docs-"][value="${rec.docs[0]}"]`);
    await page.check(`input[name="photo-"][value="${rec.photo}"]`);
    await page.evaluate(() => {
        const box = document.querySelector('input[name="docs+"]').closest("[data-file-drop]");
        const dt = new DataTransfer();
        dt.items.add(new File(["dropped"], "dropped.txt", { type: "text/plain" }));
        box.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    assert.equal(await page.locator('input[name="docs+"]').evaluate((i) => i.files.length), 1, "the drop reached the input");
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.locator(".flash-ok").first().waitFor();
    const after = await pb.collection("gallery").getOne(rec.id);
    assert.equal(after.photo, "");
    assert.equal(after.docs.length, 2);
    assert.equal(after.docs[0], rec.docs[1]);
    assert.match(after.docs[1], /^dropped_[a-z0-9]{10}\.txt$/);
    assert.equal(await page.locator(`input[name="docs-"][value="${rec.docs[0]}"]`).count(), 0);
    assert.equal(await page.locator("img.thumb").count(), 0);

    assert.deepEqual(page.problems, []);
    await page.context().close();
});

test("logs, settings and backups pages work", async () => {
    const page = await newPage(browser);
    await login(page);
    await pb.collection("articles").getList(1, 5).catch(() => {});
    await fetch(`${server.url}/api/collections/nope/records`);
    await page.goto(`${server.url}/_/logs`);
    await page.locator("svg.chart").first().waitFor();
    await shot(page, "08-logs", { fullPage: false });
    await page.goto(`${server.url}/_/settings`);
    await shot(page, "10-settings", { fullPage: false });
    await page.goto(`${server.url}/_/backups`);
    await page.getByText("No backups yet").waitFor();
    await page.getByRole("button", { name: "Create backup now" }).click();
    await page.locator(".flash-ok", { hasText: "created" }).waitFor();
    await page.locator("td.mono", { hasText: ".backup" }).first().waitFor();
    await shot(page, "11-backups", { fullPage: false });
    assert.deepEqual(page.problems, []);
    await page.context().close();
});

test("live feed shows a change made through the REST API", async () => {
    await pb.collections.create({
        name: "feed_notes",
        listRule: "",
        viewRule: "",
        schema: { type: "object", properties: { title: { type: "string" } }, additionalProperties: false },
    });
    const page = await newPage(browser);
    await login(page);
    await page.goto(`${server.url}/_/live?collection=feed_notes`);
    await page.getByText("Connected: waiting for changes").waitFor({ timeout: 10_000 });
    const rec = await pb.collection("feed_notes").create({ title: "<img src=x onerror=alert(1)>hello" });
    const item = page.locator(`#feed li:has(code:text-is("${rec.id}"))`);
    await item.waitFor({ timeout: 10_000 });
    assert.match(await item.textContent(), /create/);
    await item.locator("summary").click();
    assert.match(await item.locator("pre").textContent(), /<img src=x onerror=alert\(1\)>hello/);
    assert.equal(await page.locator("#feed img").count(), 0, "record data must stay text");
    await pb.collection("feed_notes").update(rec.id, { title: "edited" });
    await page.locator("#feed li .badge", { hasText: "update" }).first().waitFor({ timeout: 10_000 });
    await shot(page, "07-live-feed");
    assert.deepEqual(page.problems, []);
    await page.context().close();
});

test("works at 360 px wide and in dark mode", async () => {
    const page = await newPage(browser, { width: 360, height: 740, colorScheme: "dark" });
    await login(page);
    const paths = [
        "/_/collections",
        "/_/collections/new",
        "/_/collections/users",
        "/_/collections/users/records",
        "/_/collections/users/records/new",
        "/_/collections/gallery/records?cols=title,photo,docs",
        "/_/collections/gallery/records/new",
        "/_/live",
        "/_/logs",
        "/_/settings",
        "/_/backups",
    ];
    for (const path of paths) {
        await page.goto(`${server.url}${path}`);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `${path} scrolls sideways by ${overflow}px at 360px`);
    }
    await page.goto(`${server.url}/_/collections`);
    // The sidebar folds behind "Menu" and opens with it.
    const nav = page.locator("#sidebar");
    assert.equal(await nav.isVisible(), false);
    await page.getByRole("button", { name: "Menu" }).click();
    assert.equal(await nav.isVisible(), true);
    await shot(page, "09-mobile-dark");
    assert.deepEqual(page.problems, []);
    await page.context().close();
});

test("pages have no serious accessibility problems (axe-core, WCAG 2 A/AA), light and dark", async () => {
    const found = [];
    for (const colorScheme of ["light", "dark"]) {
        // Injecting axe is an inline script: this context alone bypasses the CSP.
        const context = await browser.newContext({ bypassCSP: true, colorScheme, viewport: { width: 1280, height: 900 } });
        const page = await context.newPage();
        const check = async (label) => {
            await page.addScriptTag({ path: AXE });
            const violations = await page.evaluate(async () => {
                const r = await window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa"] });
                return r.violations
                    .filter((v) => v.impact === "serious" || v.impact === "critical")
                    .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")}`);
            });
            for (const v of violations) found.push(`${colorScheme} ${label}: ${v}`);
        };
        await page.goto(`${server.url}/_/login`);
        await check("/_/login");
        await page.goto(`${server.url}/_/no-such-page`);
        await check("error page");
        await login(page);
        const paths = [
            "/_/collections",
            "/_/collections/new",
            "/_/collections/users",
            "/_/collections/users/records",
            "/_/collections/users/records/new",
            // File fields (the collection from the files test).
            "/_/collections/gallery/records",
            "/_/collections/gallery/records/new",
            "/_/live",
            "/_/logs",
            "/_/settings",
            "/_/backups",
        ];
        for (const path of paths) {
            await page.goto(`${server.url}${path}`);
            await check(path);
        }
        await context.close();
    }
    assert.deepEqual(found, []);
});
