// The OpenID provider of the OAuth2 tests (tests/support/oidc: panva's
// oidc-provider on loopback, installed by scripts/test.sh), for the e2e
// suites: started per test file, killed when the file's process exits.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

const HARNESS = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "support", "oidc");

/** Starts the provider; resolves to {issuer, stop}, or null when not installed (outside CI). */
export async function startOidc() {
    if (!existsSync(join(HARNESS, "node_modules", "oidc-provider"))) {
        if (process.env.CI) throw new Error("tests/support/oidc is not installed: see scripts/test.sh");
        return null;
    }
    const child = spawn(process.execPath, [join(HARNESS, "server.js")], { stdio: ["pipe", "pipe", "ignore"] });
    process.on("exit", () => child.kill("SIGKILL"));
    const line = await new Promise((resolve, reject) => {
        createInterface({ input: child.stdout }).once("line", resolve);
        child.once("exit", (code) => reject(new Error(`oidc provider exited (${code})`)));
    });
    const { issuer } = JSON.parse(line);
    return {
        issuer,
        /** The browser's part of the flow for `login`: the URL the provider redirects back to. */
        async authorize(url, login) {
            const r = await fetch(`${issuer}/__drive?login=${encodeURIComponent(login)}&url=${encodeURIComponent(url)}`);
            const out = await r.json();
            assert.ok(out.location, `the provider did not redirect back: ${JSON.stringify(out)}`);
            return out.location;
        },
        stop() {
            child.kill("SIGKILL");
        },
    };
}

/** The OIDC provider entry for `clientId` (the user read from the verified ID token). */
export function oidcProvider(issuer, clientId) {
    return {
        name: "oidc",
        clientId,
        clientSecret: `${clientId}-secret`,
        authURL: `${issuer}/auth`,
        tokenURL: `${issuer}/token`,
        displayName: "Test OIDC",
        extra: { issuers: [issuer], jwksURL: `${issuer}/jwks` },
    };
}
