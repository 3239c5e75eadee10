// OAuth2 / OpenID Connect through the SDK against a real OpenID provider
// (panva's oidc-provider, tests/support/oidc, started here on loopback):
// authWithOAuth2Code, the one-call authWithOAuth2({provider, urlCallback})
// flow over the realtime @oauth2 topic (the callback drives the provider's
// pages over HTTP instead of a browser, then follows the redirect back to
// Basalt), listExternalAuths and unlinkExternalAuth.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer } from "./lib/server.js";
import { adminWithoutRateLimits, client } from "./lib/sdk.js";
import { oidcProvider, startOidc } from "./lib/oidc.js";

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
