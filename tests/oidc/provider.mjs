// A real OpenID Provider for tests/oidc.rs: the npm `oidc-provider` (pinned in package.json)
// on plain HTTP on loopback, in memory, with the device authorization grant, refresh tokens,
// client credentials, and JWT access tokens for the resource `urn:arsync` (or any other the
// client asks for: the "another audience" case).
//
// Environment: PORT (required), KID (the signing key's id; a fresh RSA key is generated at
// every start, so a restart with another KID is a key rotation), SHORT_TTL (seconds an access
// token of a client whose id ends in `-short` lives; default 2).
//
// Clients: `arsync` and `arsync-short` (public, device flow and refresh tokens) and
// `arsync-test` / `arsync-test-short` (confidential, client credentials, secret `test-secret`).
// The only account is `alice`, whose tokens carry `arsync_modules: ["data", "up"]`.
// Interactions finish by themselves (login as alice, consent to what was asked): the test
// plays the user's part on the provider's own device pages (browser.mjs).
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
if (!port) throw new Error('PORT is required');
const issuer = `http://127.0.0.1:${port}`;
const kid = process.env.KID || 'k1';
const shortTtl = Number(process.env.SHORT_TTL || 2);
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const key = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
const ttlOf = (client) => (client && client.clientId.endsWith('-short') ? shortTtl : 600);

const deviceClient = (id) => ({
  client_id: id,
  token_endpoint_auth_method: 'none',
  grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
  response_types: [],
  redirect_uris: [],
});
const serviceClient = (id) => ({
  client_id: id,
  client_secret: 'test-secret',
  token_endpoint_auth_method: 'client_secret_post',
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
});

const provider = new Provider(issuer, {
  clients: [
    deviceClient('arsync'),
    deviceClient('arsync-short'),
    serviceClient('arsync-test'),
    serviceClient('arsync-test-short'),
  ],
  jwks: { keys: [key] },
  scopes: ['openid', 'offline_access', 'arsync:write'],
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:arsync',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => ({
        audience: resource,
        scope: 'arsync:write',
        accessTokenTTL: ttlOf(client),
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  ttl: {
    AccessToken: (ctx, token, client) => ttlOf(client),
    ClientCredentials: (ctx, token, client) => ttlOf(client),
    DeviceCode: 600,
    RefreshToken: 3600,
    Grant: 3600,
    Interaction: 600,
    Session: 3600,
  },
  issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
  extraTokenClaims: () => ({ arsync_modules: ['data', 'up'] }),
});

// The interaction pages: log in as alice, then consent to whatever is missing.
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) {
    await next();
    return;
  }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  let result;
  if (details.prompt.name === 'login') {
    result = { login: { accountId: 'alice' } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    const missing = details.prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    for (const [resource, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(to);
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer} kid ${kid}`);
});
