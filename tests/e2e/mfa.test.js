// Multi-factor logins through the JS SDK, as an app written for PocketBase
// does them: the first factor throws ClientResponseError 401 with
// `response.mfaId`, a different second factor with `{ mfaId }` (the SDK
// puts it in the query) logs in. OTP codes are read from the dev outbox.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer } from "./lib/server.js";
import { ClientResponseError, adminWithoutRateLimits, client, outboxNames, waitForMail } from "./lib/sdk.js";
import { otpCodeIn } from "./lib/smtpsink.js";

const PASSWORD = "password-123";
const OTP_LENGTH = 7;

let server;
let su;

before(async () => {
    server = await startServer();
    su = await adminWithoutRateLimits(server);
    await su.collections.update("users", { otp: { enabled: true, length: OTP_LENGTH }, mfa: { enabled: true } });
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

async function signUp(email) {
    await client(server).collection("users").create({ email, password: PASSWORD, passwordConfirm: PASSWORD });
}

/** `requestOTP`, then the code from the mail it sends: `[otpId, code]`. */
async function otp(pb, email) {
    const before = outboxNames(server);
    const { otpId } = await pb.collection("users").requestOTP(email);
    return [otpId, otpCodeIn(await waitForMail(server, email, before), OTP_LENGTH)];
}

/** The first factor's 401 and its mfaId. */
async function mfaIdOf(promise) {
    const err = await rejection(promise);
    assert.equal(err.status, 401);
    assert.equal(typeof err.response.mfaId, "string", JSON.stringify(err.response));
    return err.response.mfaId;
}

test("listAuthMethods reports MFA with its duration", async () => {
    const methods = await client(server).collection("users").listAuthMethods();
    assert.deepEqual(methods.mfa, { enabled: true, duration: 600 });
    assert.equal(methods.otp.enabled, true);
});

test("authWithPassword, then requestOTP and authWithOTP with the mfaId", async () => {
    const pb = client(server);
    await signUp("mia@example.com");
    const mfaId = await mfaIdOf(pb.collection("users").authWithPassword("mia@example.com", PASSWORD));
    assert.equal(pb.authStore.isValid, false, "no token after one factor");
    const [otpId, code] = await otp(pb, "mia@example.com");
    const auth = await pb.collection("users").authWithOTP(otpId, code, { mfaId });
    assert.equal(auth.record.email, "mia@example.com");
    assert.equal(pb.authStore.isValid, true);
    assert.equal(pb.authStore.record.email, "mia@example.com");
    // The token is an ordinary one: refreshing needs no second factor.
    await pb.collection("users").authRefresh();
    assert.equal(pb.authStore.isValid, true);
    // The mfaId worked once.
    pb.authStore.clear();
    const [otpId2, code2] = await otp(pb, "mia@example.com");
    const reused = await rejection(pb.collection("users").authWithOTP(otpId2, code2, { mfaId }));
    assert.equal(reused.status, 400);
    assert.equal(reused.response.message, "Invalid or expired MFA session.");
    assert.equal(pb.authStore.isValid, false);
});

test("authWithOTP first, then authWithPassword with the mfaId", async () => {
    const pb = client(server);
    await signUp("noa@example.com");
    const [otpId, code] = await otp(pb, "noa@example.com");
    const mfaId = await mfaIdOf(pb.collection("users").authWithOTP(otpId, code));
    const auth = await pb.collection("users").authWithPassword("noa@example.com", PASSWORD, { mfaId });
    assert.equal(auth.record.email, "noa@example.com");
    assert.equal(pb.authStore.isValid, true);
});

test("the same method twice, or another account's mfaId, is refused", async () => {
    const pb = client(server);
    await signUp("oli@example.com");
    await signUp("pat@example.com");
    const mfaId = await mfaIdOf(pb.collection("users").authWithPassword("oli@example.com", PASSWORD));
    const twice = await rejection(pb.collection("users").authWithPassword("oli@example.com", PASSWORD, { mfaId }));
    assert.equal(twice.status, 400);
    assert.equal(twice.response.message, "A different authentication method is required.");
    // Pat has both her factors, and Oli's mfaId: still no login as anyone.
    const [otpId, code] = await otp(pb, "pat@example.com");
    const other = await rejection(pb.collection("users").authWithOTP(otpId, code, { mfaId }));
    assert.equal(other.status, 400);
    assert.equal(pb.authStore.isValid, false);
    // Oli's pending login survived both: his code finishes it.
    const [otpId2, code2] = await otp(pb, "oli@example.com");
    const auth = await pb.collection("users").authWithOTP(otpId2, code2, { mfaId });
    assert.equal(auth.record.email, "oli@example.com");
});
