// Users through the SDK: sign-up, authWithPassword, the auth store,
// authRefresh, password reset and verification by mail (read from the dev
// outbox), and how the SDK keeps its auth store in step with the record.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { SU_EMAIL, SU_PASSWORD, startServer } from "./lib/server.js";
import {
    ClientResponseError,
    adminWithoutRateLimits,
    client,
    outboxNames,
    tokenIn,
    waitForMail,
} from "./lib/sdk.js";

let server;
let su;

before(async () => {
    server = await startServer();
    su = await adminWithoutRateLimits(server);
});

after(async () => {
    await server?.stop();
});

async function rejection(promise) {
    try {
        await promise;
    } catch (err) {
        assert.ok(err instanceof ClientResponseError, `expected a ClientResponseError, got ${err?.stack ?? err}`);
        return err;
    }
    assert.fail("expected the request to fail");
}

async function signUp(pb, email, password) {
    const user = await pb.collection("users").create({ email, password, passwordConfirm: password, name: "Test" });
    assert.equal(typeof user.id, "string");
    return user;
}

/** Waits for the wall clock to enter the next second (token `exp` has 1 s resolution). */
function nextSecond() {
    return new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 20));
}

/** The JWT payload (as the SDK's own helpers read it). */
function claims(token) {
    return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
}

test("sign-up, authWithPassword, auth store, authRefresh and clear", async () => {
    const pb = client(server);
    const email = "amy@example.com";
    const user = await signUp(pb, email, "password-1");
    assert.equal(user.collectionName, "users");
    assert.equal(user.verified, false);
    assert.equal(user.password, undefined, "the password never comes back");
    assert.equal(user.passwordConfirm, undefined);
    assert.equal(pb.authStore.isValid, false, "signing up does not log in");

    const auth = await pb.collection("users").authWithPassword(email, "password-1");
    assert.equal(typeof auth.token, "string");
    assert.equal(auth.record.id, user.id);
    assert.equal(auth.record.email, email);
    assert.equal(pb.authStore.isValid, true);
    assert.equal(pb.authStore.token, auth.token);
    assert.equal(pb.authStore.record.id, user.id);
    assert.equal(pb.authStore.record.email, email);
    assert.equal(pb.authStore.record.collectionName, "users");
    assert.equal(pb.authStore.isSuperuser, false);
    const c = claims(auth.token);
    assert.equal(c.id, user.id);
    assert.equal(c.type, "auth");
    assert.equal(c.collectionId, user.collectionId);
    assert.ok(c.exp > Date.now() / 1000);

    // The SDK now sends the token: the user can see their own record.
    const me = await pb.collection("users").getOne(user.id);
    assert.equal(me.email, email);
    // ... and only their own.
    const other = await signUp(client(server), "ben@example.com", "password-2");
    assert.equal((await rejection(pb.collection("users").getOne(other.id))).status, 404);
    const list = await pb.collection("users").getList();
    assert.deepEqual(
        list.items.map((u) => u.id),
        [user.id],
    );

    await nextSecond();
    const refreshed = await pb.collection("users").authRefresh();
    assert.notEqual(refreshed.token, auth.token, "authRefresh issues a new token");
    assert.ok(claims(refreshed.token).exp > c.exp);
    assert.equal(refreshed.record.id, user.id);
    assert.equal(pb.authStore.token, refreshed.token);
    assert.equal(pb.authStore.isValid, true);

    // Updating one's own record keeps the auth store's copy current.
    await pb.collection("users").update(user.id, { name: "Amy" });
    assert.equal(pb.authStore.record.name, "Amy");

    pb.authStore.clear();
    assert.equal(pb.authStore.isValid, false);
    assert.equal(pb.authStore.token, "");
    assert.equal(pb.authStore.record, null);
    assert.equal((await rejection(pb.collection("users").getOne(user.id))).status, 404);
    const guestRefresh = await rejection(pb.collection("users").authRefresh());
    assert.equal(guestRefresh.status, 401);
});

test("failed logins and bad sign-ups are ClientResponseErrors", async () => {
    const pb = client(server);
    await signUp(pb, "cal@example.com", "password-1");
    const wrong = await rejection(pb.collection("users").authWithPassword("cal@example.com", "not-the-password"));
    assert.equal(wrong.status, 400);
    assert.equal(pb.authStore.isValid, false);
    const unknown = await rejection(pb.collection("users").authWithPassword("nobody@example.com", "password-1"));
    assert.equal(unknown.status, 400);
    assert.equal(unknown.response.message, wrong.response.message, "no hint whether the account exists");

    const mismatch = await rejection(
        pb.collection("users").create({ email: "dan@example.com", password: "password-1", passwordConfirm: "password-2" }),
    );
    assert.equal(mismatch.status, 400);
    assert.equal(mismatch.response.data.passwordConfirm.code, "validation_values_mismatch");
    const taken = await rejection(
        pb.collection("users").create({ email: "cal@example.com", password: "password-1", passwordConfirm: "password-1" }),
    );
    assert.equal(taken.status, 400);
    assert.equal(typeof taken.response.data.email.code, "string");
});

test("password reset by mail: requestPasswordReset + confirmPasswordReset", async () => {
    const pb = client(server);
    const email = "eve@example.com";
    await signUp(pb, email, "old-password");
    const session = client(server);
    await session.collection("users").authWithPassword(email, "old-password");

    const before = outboxNames(server);
    assert.equal(await pb.collection("users").requestPasswordReset(email), true);
    const mail = await waitForMail(server, email, before);
    const token = tokenIn(mail);

    const mismatch = await rejection(pb.collection("users").confirmPasswordReset(token, "new-password", "other-password"));
    assert.equal(mismatch.status, 400);
    assert.equal(mismatch.response.data.passwordConfirm.code, "validation_values_mismatch");
    const garbage = await rejection(pb.collection("users").confirmPasswordReset("garbage", "new-password", "new-password"));
    assert.equal(garbage.status, 400);

    assert.equal(await pb.collection("users").confirmPasswordReset(token, "new-password", "new-password"), true);

    const old = await rejection(pb.collection("users").authWithPassword(email, "old-password"));
    assert.equal(old.status, 400);
    const auth = await pb.collection("users").authWithPassword(email, "new-password");
    assert.equal(auth.record.email, email);
    assert.equal(pb.authStore.isValid, true);

    // The token is spent, and the session from before the reset is revoked.
    const reused = await rejection(pb.collection("users").confirmPasswordReset(token, "third-password", "third-password"));
    assert.equal(reused.status, 400);
    assert.equal((await rejection(session.collection("users").authRefresh())).status, 401);

    // Unknown addresses get the same answer and no mail (checked once a
    // later mail to a known address has arrived).
    const quiet = outboxNames(server);
    assert.equal(await pb.collection("users").requestPasswordReset("nobody@example.com"), true);
    assert.equal(await pb.collection("users").requestPasswordReset(email), true);
    await waitForMail(server, email, quiet);
    const fresh = [...outboxNames(server)].filter((name) => !quiet.has(name));
    assert.equal(fresh.length, 1, `only the marker mail was written: ${fresh}`);
});

test("verification by mail: requestVerification + confirmVerification", async () => {
    const pb = client(server);
    const email = "fay@example.com";
    const user = await signUp(pb, email, "password-1");
    await pb.collection("users").authWithPassword(email, "password-1");
    assert.equal(pb.authStore.record.verified, false);

    const before = outboxNames(server);
    assert.equal(await pb.collection("users").requestVerification(email), true);
    const mail = await waitForMail(server, email, before);
    assert.match(mail, /confirm-verification/);
    const token = tokenIn(mail);
    assert.equal(claims(token).id, user.id);

    const garbage = await rejection(pb.collection("users").confirmVerification("garbage"));
    assert.equal(garbage.status, 400);
    assert.equal(await pb.collection("users").confirmVerification(token), true);
    // The SDK marks its logged-in record verified itself ...
    assert.equal(pb.authStore.record.verified, true);
    // ... and the server agrees.
    assert.equal((await pb.collection("users").getOne(user.id)).verified, true);
    assert.equal((await su.collection("users").getOne(user.id)).verified, true);
    const refreshed = await pb.collection("users").authRefresh();
    assert.equal(refreshed.record.verified, true);
});

test("deleting one's own record through the SDK clears its auth store", async () => {
    const pb = client(server);
    const user = await signUp(pb, "gus@example.com", "password-1");
    await pb.collection("users").authWithPassword("gus@example.com", "password-1");
    assert.equal(await pb.collection("users").delete(user.id), true);
    assert.equal(pb.authStore.isValid, false);
    assert.equal((await rejection(su.collection("users").getOne(user.id))).status, 404);
});

test("superuser auth through the SDK", async () => {
    const pb = client(server);
    const auth = await pb.collection("_superusers").authWithPassword(SU_EMAIL, SU_PASSWORD);
    assert.equal(auth.record.email, SU_EMAIL);
    assert.equal(pb.authStore.isSuperuser, true);
    const settings = await pb.settings.getAll();
    assert.equal(settings.rateLimits.enabled, false);
    const collections = await pb.collections.getFullList();
    assert.ok(collections.some((c) => c.name === "users"));
    // A user token is not a superuser token.
    const user = client(server);
    await signUp(user, "hal@example.com", "password-1");
    await user.collection("users").authWithPassword("hal@example.com", "password-1");
    assert.equal((await rejection(user.collections.getList())).status, 403);
});
