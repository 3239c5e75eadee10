// OAuth2 / OpenID Connect through the SDK against a real OpenID provider
// (panva's oidc-provider, tests/support/oidc, started here on loopback):
// authWithOAuth2Code, the one-call authWithOAuth2({provider, urlCallback})
// flow over the realtime @oauth2 topic (the callback drives the provider's
// pages over HTTP instead of a browser, then follows the redirect back to
// Basalt), listExternalAuths and unlinkExternalAuth.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

import { startServer } from "./lib/server.js";
import { adminWithoutRateLimits, client } from "./lib/sdk.js";

const HARNESS = join(dirname(fileURLToPath(import.meta.url)), "..", "support", "oidc");

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

let server;
let oidc;
let su;

before(async () => {
    oidc = await startOidc();
    if (!oidc) return;
    server = await startServer();
    su = await adminWithoutRateLimits(server);
    await su.collections.update("users", {
        oauth2: {
            enabled: true,
            providers: [oidcProvider(oidc.issuer, "basalt")],
            mappedFields: { id: "", name: "name", username: "", avatarURL: "" },
        },
    });
});

after(async () => {
    await server?.stop();
    oidc?.stop();
});

test("authWithOAuth2Code signs up, signs in again, and the links can be listed and removed", async (t) => {
    if (!oidc) return t.skip("tests/support/oidc is not installed");
    const pb = client(server);
    const redirect = "http://127.0.0.1:9/callback";
    const signIn = async () => {
        const methods = await pb.collection("users").listAuthMethods();
        const p = methods.oauth2.providers.find((x) => x.name === "oidc");
        const back = new URL(await oidc.authorize(p.authURL + encodeURIComponent(redirect), "erin"));
        assert.equal(back.searchParams.get("state"), p.state);
        return pb.collection("users").authWithOAuth2Code("oidc", back.searchParams.get("code"), p.codeVerifier, redirect);
    };
    const first = await signIn();
    assert.equal(first.meta.isNew, true);
    assert.equal(first.record.email, "erin@example.test");
    assert.equal(first.record.verified, true);
    assert.equal(first.record.name, "Name of erin");
    assert.ok(pb.authStore.isValid);
    assert.equal(pb.authStore.record.id, first.record.id);

    const again = await signIn();
    assert.equal(again.meta.isNew, false);
    assert.equal(again.record.id, first.record.id);

    const links = await pb.collection("users").listExternalAuths(first.record.id);
    assert.deepEqual(
        links.map((l) => [l.provider, l.providerId, l.recordRef]),
        [["oidc", "erin", first.record.id]],
    );
    await pb.collection("users").unlinkExternalAuth(first.record.id, "oidc");
    assert.deepEqual(await pb.collection("users").listExternalAuths(first.record.id), []);
});

test("authWithOAuth2({provider, urlCallback}) completes over the realtime @oauth2 topic", async (t) => {
    if (!oidc) return t.skip("tests/support/oidc is not installed");
    const pb = client(server);
    const result = await pb.collection("users").authWithOAuth2({
        provider: "oidc",
        urlCallback: async (url) => {
            // The browser: the provider's pages, then back to /api/oauth2-redirect.
            const back = await oidc.authorize(url, "frank");
            assert.ok(back.startsWith(`${server.url}/api/oauth2-redirect?`), back);
            const page = await fetch(back);
            assert.equal(page.status, 200);
            assert.match(await page.text(), /^Auth completed\./);
        },
    });
    assert.equal(result.record.email, "frank@example.test");
    assert.equal(result.meta.isNew, true);
    assert.equal(pb.authStore.record.id, result.record.id);
    pb.realtime.unsubscribe();
});
