// A real OpenID Connect provider for Basalt's OAuth2 tests: panva's
// oidc-provider on 127.0.0.1, port 0. Prints one JSON line on stdout once it
// listens ({"issuer": "http://127.0.0.1:PORT"}), then serves until its stdin
// closes (the test that started it died or dropped it) or it is killed.
//
// Clients (both "native": any loopback port is accepted for their redirect
// URIs, as RFC 8252 allows, since Basalt and PocketBase listen on port 0):
//   basalt      / basalt-secret      (client_secret_post)
//   pocketbase  / pocketbase-secret  (client_secret_basic)
//   redirect URIs http://127.0.0.1/callback and
//   http://127.0.0.1/api/oauth2-redirect (any port).
//
// Accounts: any account id works. Its email is `<id>@example.test`, verified
// unless the id starts with "unverified". The account that signs in is the
// authorization request's `login_hint` (default "alice").
//
// Helpers for tests (not part of OpenID Connect):
//   GET /__drive?url=AUTH_URL[&login=ID][&deny=1]
//     performs the browser's part of the code flow without a browser (the
//     provider's redirects, cookies, the login and the consent) and answers
//     {"location": "<the client's redirect_uri with code and state>"}.
//   POST /evil/token/KIND, GET /evil/userinfo/KIND
//     a misbehaving token / user-info endpoint (see `evilToken`): forged or
//     defective ID tokens, oversized answers, an answer that never comes.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const REDIRECTS = ['http://127.0.0.1/callback', 'http://127.0.0.1/api/oauth2-redirect'];

function accountClaims(id) {
  return {
    sub: id,
    email: `${id}@example.test`,
    email_verified: !id.startsWith('unverified'),
    name: `Name of ${id}`,
    preferred_username: id.replace(/[^A-Za-z0-9_]/g, '_'),
    picture: `https://example.test/avatars/${id}.png`,
  };
}

function keyPair() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

const signingJwk = keyPair();
const foreignJwk = keyPair();
const publicJwk = (({ kty, n, e, kid, alg, use }) => ({ kty, n, e, kid, alg, use }))(signingJwk);

function configuration() {
  return {
    clients: [
      {
        client_id: 'basalt',
        client_secret: 'basalt-secret',
        application_type: 'native',
        redirect_uris: REDIRECTS,
        token_endpoint_auth_method: 'client_secret_post',
      },
      {
        client_id: 'pocketbase',
        client_secret: 'pocketbase-secret',
        application_type: 'native',
        redirect_uris: REDIRECTS,
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [signingJwk] },
    cookies: { keys: ['basalt-oidc-test-cookie-key'] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'picture'],
    },
    // ID tokens carry the claims, so a client may read the user from them.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    pkce: { required: () => false },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (_ctx, id) => ({ accountId: id, claims: async () => accountClaims(id) }),
    ttl: { AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, Interaction: 600, Session: 600, Grant: 600 },
  };
}

/** The login and consent, done at once for the `login_hint` account. */
async function interact(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const params = details.params;
  if (params.login_hint === 'deny') {
    const result = { error: 'access_denied', error_description: 'the user said no' };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }
  const accountId = params.login_hint || 'alice';
  const grant = new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(String(params.scope || 'openid'));
  const grantId = await grant.save();
  const result = { login: { accountId }, consent: { grantId } };
  return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

/** Follows the provider's redirects with a cookie jar until they leave it. */
async function drive(issuer, authUrl, login) {
  const url = new URL(authUrl);
  if (login) url.searchParams.set('login_hint', login);
  const jar = new Map();
  let next = url.toString();
  for (let hop = 0; hop < 10; hop++) {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const r = await fetch(next, { redirect: 'manual', headers: cookie ? { cookie } : {} });
    for (const c of r.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      jar.set(pair.slice(0, i), pair.slice(i + 1));
    }
    const location = r.headers.get('location');
    if (!location) {
      return { status: r.status, body: await r.text() };
    }
    const target = new URL(location, next);
    if (target.origin !== issuer) return { location: target.toString() };
    next = target.toString();
  }
  return { error: 'too many redirects' };
}

/** A token answer with an ID token broken the way `kind` says. */
async function evilToken(issuer, kind, res) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    ...accountClaims(`evil-${kind}`),
    iss: issuer,
    aud: 'basalt',
    iat: now,
    exp: now + 600,
  };
  if (kind === 'wrong-aud') claims.aud = 'someone-else';
  if (kind === 'wrong-iss') claims.iss = 'http://127.0.0.1:1';
  if (kind === 'expired') {
    claims.iat = now - 7200;
    claims.exp = now - 3600;
  }
  if (kind === 'wrong-nonce') claims.nonce = 'not-the-one-basalt-sent';
  const sign = async (jwk, header = {}) => {
    const key = await jose.importJWK(jwk, 'RS256');
    return new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: jwk.kid, ...header }).sign(key);
  };
  let idToken;
  switch (kind) {
    case 'foreign-key':
      idToken = await sign(foreignJwk);
      break;
    case 'foreign-key-same-kid':
      idToken = await sign({ ...foreignJwk, kid: signingJwk.kid });
      break;
    case 'alg-none': {
      const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
      idToken = `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
      break;
    }
    case 'hs256-public-key': {
      // The "algorithm confusion" trick: HMAC keyed with the public key.
      const secret = new TextEncoder().encode(JSON.stringify(publicJwk));
      idToken = await new jose.SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', kid: signingJwk.kid })
        .sign(secret);
      break;
    }
    case 'hang':
      return; // never answers; the socket stays open until the server stops
    case 'huge':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"access_token":"');
      for (let i = 0; i < 64; i++) res.write('x'.repeat(64 * 1024));
      res.end('","token_type":"Bearer"}');
      return;
    case 'error':
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'invalid_grant', error_description: 'grant request is invalid' }));
      return;
    default:
      idToken = await sign(signingJwk);
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ access_token: `evil-${kind}`, token_type: 'Bearer', expires_in: 600, id_token: idToken }));
}

function evilUserinfo(kind, res) {
  if (kind === 'hang') return;
  res.writeHead(200, { 'content-type': 'application/json' });
  if (kind === 'huge') {
    res.write('{"sub":"huge","name":"');
    for (let i = 0; i < 64; i++) res.write('y'.repeat(64 * 1024));
    res.end('"}');
    return;
  }
  res.end(JSON.stringify(accountClaims(`evil-userinfo-${kind}`)));
}

async function main() {
  let issuer = '';
  let provider;
  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url, issuer);
      const parts = url.pathname.split('/');
      if (url.pathname.startsWith('/interaction/')) return await interact(provider, req, res);
      if (url.pathname === '/__drive') {
        const out = await drive(issuer, url.searchParams.get('url'), url.searchParams.get('login'));
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify(out));
      }
      if (parts[1] === 'evil' && parts[2] === 'token') return await evilToken(issuer, parts[3], res);
      if (parts[1] === 'evil' && parts[2] === 'userinfo') return evilUserinfo(parts[3], res);
      return provider.callback()(req, res);
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(e && e.stack));
    }
  });
  server.listen(0, '127.0.0.1', () => {
    issuer = `http://127.0.0.1:${server.address().port}`;
    provider = new Provider(issuer, configuration());
    provider.proxy = false;
    process.stdout.write(`${JSON.stringify({ issuer })}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

main();
