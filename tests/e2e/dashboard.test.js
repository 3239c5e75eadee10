// The admin dashboard in a real browser (headless Debian Chromium through
// playwright-core): log in, build a collection, manage its records, watch
// the live feed, and check that stored markup stays text.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import PocketBase from "pocketbase";

import { startServer, SU_EMAIL, SU_PASSWORD } from "./lib/server.js";
import { launch, newPage, shot } from "./lib/browser.js";

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
    await page.getByRole("button", { name: "Log out" }).click();
    await page.waitForURL(/\/_\/login$/);
    await page.goto(`${server.url}/_/collections`);
    assert.match(page.url(), /\/_\/login/, "logged out: back to the login page");
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
    for (const path of ["/_/collections", "/_/live", "/_/logs", "/_/settings", "/_/collections/users/records"]) {
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
