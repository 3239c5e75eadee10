// The auth options page of an auth collection in a real browser (headless
// Debian Chromium through playwright-core): a mail template edited,
// previewed (the preview is a sandboxed iframe: a script in a template must
// not run) and saved; an OAuth2 provider added, edited (the secret is
// write-only) and removed; the page at 360 px and under axe-core.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import PocketBase from "pocketbase";

import { startServer, SU_EMAIL, SU_PASSWORD } from "./lib/server.js";
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

async function login(page) {
    await page.goto(`${server.url}/_/login`);
    await page.fill('input[name="email"]', SU_EMAIL);
    await page.fill('input[name="password"]', SU_PASSWORD);
    await page.click('button[type="submit"]');
    await page.waitForURL(/\/_\/collections$/, { timeout: 10_000 });
}

/** What Chromium reports when the sandbox stops a template's script. */
const SANDBOXED = /Blocked script execution in 'about:srcdoc' because the document's frame is sandboxed/;

test("mail template: edit, preview in a sandbox (no script runs), save", async () => {
    const page = await newPage(browser);
    await login(page);
    await page.goto(`${server.url}/_/collections/users`);
    await page.getByRole("link", { name: "Auth options" }).click();
    await page.waitForURL(/\/_\/collections\/users\/auth$/);

    const section = page.locator("#template-verification");
    await section.locator("summary").click();
    await section.getByLabel("Subject").fill("Welcome {RECORD:email} to {APP_NAME}");
    await section
        .getByLabel("Body (HTML)")
        .fill('<p class="x">Hi {RECORD:email}, code [{TOKEN}]</p><script>alert("template")</script><img src=x onerror="alert(2)">');
    await section.getByRole("button", { name: "Preview" }).click();
    await page.waitForURL(/\/templates\/verification\/preview/);

    const preview = page.locator("#preview-verification");
    await preview.waitFor();
    assert.equal(await preview.locator(".preview-subject").textContent(), "Welcome user@example.com to Basalt");
    const frame = page.frameLocator("iframe.preview-html");
    const p = frame.locator("p.x");
    await p.waitFor();
    assert.equal(await p.textContent(), "Hi user@example.com, code [TEST-TOKEN-not-valid]");
    // The layout's stylesheet applies inside the frame.
    const bg = await frame.locator("body").evaluate((b) => getComputedStyle(b).backgroundColor);
    assert.equal(bg, "rgb(244, 245, 247)");
    // The typed template is kept, not saved.
    assert.match(await page.locator("#f-verification-body").inputValue(), /<script>alert\("template"\)<\/script>/);
    const stored = await pb.collections.getOne("users");
    assert.equal(stored.verificationTemplate.subject, "Verify your {APP_NAME} email");
    await shot(page, "auth-template-preview");

    await section.getByRole("button", { name: "Save template" }).click();
    await page.getByText("Saved.").waitFor();
    const saved = await pb.collections.getOne("users");
    assert.equal(saved.verificationTemplate.subject, "Welcome {RECORD:email} to {APP_NAME}");

    // No alert ran; the only complaints are the sandbox blocking scripts.
    assert.deepEqual(
        page.problems.filter((p) => !SANDBOXED.test(p)),
        [],
    );
    await page.context().close();
});

test("OAuth2 providers: add, edit keeping the secret, remove", async () => {
    const page = await newPage(browser);
    await login(page);
    await page.goto(`${server.url}/_/collections/users/auth`);
    await page.getByRole("link", { name: "Add a provider" }).click();
    const form = page.locator("#provider-form");
    await form.locator('input[name="provider.name"]').fill("google");
    await form.getByLabel("Display name").fill("Google");
    await form.getByLabel("Client id").fill("client-1");
    await form.getByLabel("Client secret").fill("s3cret-value");
    await form.getByLabel("PKCE").selectOption("on");
    await form.getByRole("button", { name: "Save provider" }).click();
    await page.getByText("Saved.").waitFor();

    const row = page.locator("table.providers tbody tr", { hasText: "google" });
    assert.equal(await row.locator(".badge").textContent(), "set");
    assert.ok(!(await page.content()).includes("s3cret-value"), "the secret is never in the page");

    await row.getByRole("link", { name: /Edit/ }).click();
    await form.waitFor();
    assert.equal(await form.getByLabel("Client secret").inputValue(), "");
    await form.getByText("A secret is stored. Leave empty to keep it.").waitFor();
    await form.getByLabel("Client id").fill("client-2");
    await form.getByRole("button", { name: "Save provider" }).click();
    await page.getByText("Saved.").waitFor();
    const stored = await pb.collections.getOne("users");
    assert.equal(stored.oauth2.providers.length, 1);
    assert.equal(stored.oauth2.providers[0].clientId, "client-2");
    assert.equal(await row.locator(".badge").textContent(), "set", "the secret was kept");
    await shot(page, "auth-providers");

    await row.getByRole("button", { name: /Remove/ }).click();
    await page.getByText("Saved.").waitFor();
    assert.equal(await page.locator("table.providers").count(), 0);
    assert.deepEqual((await pb.collections.getOne("users")).oauth2.providers, []);
    assert.deepEqual(page.problems, []);
    await page.context().close();
});

test("auth options page at 360 px in dark mode, and axe-core (light and dark)", async () => {
    const page = await newPage(browser, { width: 360, height: 740, colorScheme: "dark" });
    await login(page);
    for (const path of ["/_/collections/users/auth", "/_/collections/users/auth?add=1"]) {
        await page.goto(`${server.url}${path}`);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `${path} scrolls sideways by ${overflow}px at 360px`);
    }
    const section = page.locator("#template-otp");
    await section.locator("summary").click();
    await section.getByRole("button", { name: "Preview" }).click();
    await page.locator("#preview-otp iframe").waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the preview scrolls sideways by ${overflow}px at 360px`);
    await shot(page, "auth-mobile-dark");
    assert.deepEqual(page.problems, []);
    await page.context().close();

    const found = [];
    for (const colorScheme of ["light", "dark"]) {
        // Injecting axe is an inline script: this context alone bypasses the CSP.
        const context = await browser.newContext({ bypassCSP: true, colorScheme, viewport: { width: 1280, height: 900 } });
        const p = await context.newPage();
        await login(p);
        const check = async (label) => {
            await p.addScriptTag({ path: AXE });
            const violations = await p.evaluate(async () => {
                const r = await window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa"] });
                return r.violations
                    .filter((v) => v.impact === "serious" || v.impact === "critical")
                    .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")}`);
            });
            for (const v of violations) found.push(`${colorScheme} ${label}: ${v}`);
        };
        await p.goto(`${server.url}/_/collections/users/auth?add=1`);
        await check("auth options with the provider form");
        const otp = p.locator("#template-otp");
        await otp.locator("summary").click();
        await otp.getByRole("button", { name: "Preview" }).click();
        await p.locator("#preview-otp iframe").waitFor();
        await check("auth options with a preview");
        // A refused save: messages at their fields.
        await p.goto(`${server.url}/_/collections/users/auth`);
        await p.locator("#otp").getByLabel("Seconds a code stays valid").fill("");
        await p.locator("#otp").getByRole("button", { name: "Save one-time passwords" }).click();
        await p.locator("#otp .field-error").first().waitFor();
        await check("auth options with an error");
        await context.close();
    }
    assert.deepEqual(found, []);
});
