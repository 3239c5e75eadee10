// Headless Chromium for the dashboard tests: Debian's `chromium` package
// (never `playwright install`), driven by playwright-core. Screenshots go
// to tests/e2e/artifacts/dashboard/.

import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
export const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), "..", "artifacts", "dashboard");

/** Launches Chromium headless with the flags this sandbox needs. */
export async function launch() {
    mkdirSync(ARTIFACTS, { recursive: true });
    return chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            // Without these Chromium calls home; the sandbox refuses it.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    });
}

/**
 * A new page that fails the test on any script error, CSP violation or
 * `alert()` (stored XSS would show up as one of those).
 */
export async function newPage(browser, { width = 1280, height = 860, colorScheme = "light" } = {}) {
    const context = await browser.newContext({ viewport: { width, height }, colorScheme });
    const page = await context.newPage();
    const problems = [];
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (msg) => {
        if (msg.type() === "error" && !/Failed to load resource/.test(msg.text())) {
            problems.push(`console error: ${msg.text()}`);
        }
    });
    page.on("dialog", async (d) => {
        if (d.type() === "alert" || d.type() === "prompt") problems.push(`unexpected ${d.type()}: ${d.message()}`);
        await d.accept();
    });
    page.problems = problems;
    return page;
}

/** Saves a screenshot (whole page unless `fullPage: false`) as artifacts/dashboard/NAME.png. */
export async function shot(page, name, { fullPage = true } = {}) {
    const path = join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path, fullPage });
    return path;
}
