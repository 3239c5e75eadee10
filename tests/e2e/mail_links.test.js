// The link in a password-reset mail, walked in a real browser (headless
// Debian Chromium through playwright-core): the reset is requested with the
// SDK, the link read from the dev outbox, the page filled in and submitted
// (no JavaScript needed, none allowed by the CSP), then the SDK logs in with
// the new password.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";

import { startServer } from "./lib/server.js";
import { ClientResponseError, adminWithoutRateLimits, client, outboxNames, waitForMail } from "./lib/sdk.js";
import { launch, newPage, shot } from "./lib/browser.js";

const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

let server;
let browser;

before(async () => {
    server = await startServer();
    browser = await launch();
    const su = await adminWithoutRateLimits(server);
    // Mails link to the appURL: this server.
    await su.settings.update({ meta: { appURL: server.url } });
});

after(async () => {
    await browser?.close();
    await server?.stop();
});

/** The `/_/auth/<page>/…` link of a mail (absolute, as the mail has it). */
function linkIn(mail, page) {
    const escaped = server.url.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const m = new RegExp(`^${escaped}/_/auth/${page}/\\S+$`, "m").exec(mail);
    if (!m) throw new Error(`no ${page} link to ${server.url} in mail:\n${mail}`);
    return m[0];
}

/** Serious or critical WCAG 2 A/AA problems on the page (axe-core). */
async function axeProblems(page) {
    await page.addScriptTag({ path: AXE });
    return page.evaluate(async () => {
        const r = await window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa"] });
        return r.violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")}`);
    });
}

test("password reset link: open, fill, submit, log in with the new password", async () => {
    const pb = client(server);
    const email = "gil@example.com";
    await pb.collection("users").create({ email, password: "old-password", passwordConfirm: "old-password" });

    const seen = outboxNames(server);
    assert.equal(await pb.collection("users").requestPasswordReset(email), true);
    const link = linkIn(await waitForMail(server, email, seen), "confirm-password-reset");

    // Accessibility of the form page (a context that bypasses the CSP, only
    // to inject axe); opening it changes nothing.
    const a11y = await browser.newContext({ bypassCSP: true });
    const a11yPage = await a11y.newPage();
    await a11yPage.goto(link);
    assert.deepEqual(await axeProblems(a11yPage), []);
    await a11y.close();
    await pb.collection("users").authWithPassword(email, "old-password");
    pb.authStore.clear();

    const page = await newPage(browser, { width: 360, height: 740 });
    const shown = await page.goto(link);
    assert.equal(shown.status(), 200);
    assert.match(shown.headers()["content-security-policy"], /script-src 'self'/);
    await page.getByRole("heading", { name: "Choose a new password" }).waitFor();
    assert.equal(await page.locator("script").count(), 0, "no script needed");
    // The password field takes the focus on load.
    assert.equal(await page.evaluate(() => document.activeElement?.name), "password");
    await shot(page, "mail-link-reset-form");

    // Passwords that differ: the form again, with the error next to the field.
    await page.getByLabel(/^New password/).fill("new-password");
    await page.getByLabel("Repeat the new password").fill("other-password");
    const [refused] = await Promise.all([
        page.waitForNavigation(),
        page.getByRole("button", { name: "Set the new password" }).click(),
    ]);
    assert.equal(refused.status(), 400);
    await page.getByText("Values don't match.").waitFor();
    await shot(page, "mail-link-reset-mismatch");

    await page.getByLabel(/^New password/).fill("new-password");
    await page.getByLabel("Repeat the new password").fill("new-password");
    const [done] = await Promise.all([
        page.waitForNavigation(),
        page.keyboard.press("Enter"),
    ]);
    assert.equal(done.status(), 200);
    await page.getByText("Your password has been changed").waitFor();
    await shot(page, "mail-link-reset-done");
    assert.deepEqual(page.problems, []);

    const auth = await pb.collection("users").authWithPassword(email, "new-password");
    assert.equal(auth.record.email, email);
    await assert.rejects(
        client(server).collection("users").authWithPassword(email, "old-password"),
        (err) => err instanceof ClientResponseError && err.status === 400,
    );

    // The link works once.
    const again = await page.goto(link);
    assert.equal(again.status(), 400);
    await page.getByText("This link is invalid, has expired or has already been used.").waitFor();
    assert.deepEqual(page.problems, []);
    await page.context().close();

    const spent = await browser.newContext({ bypassCSP: true });
    const spentPage = await spent.newPage();
    await spentPage.goto(link);
    assert.deepEqual(await axeProblems(spentPage), []);
    await spent.close();
});
