// A relying party built on openid-client (and oauth4webapi under it), the
// independent check that Gatehouse speaks OAuth 2.0 / OpenID Connect as
// widely used client libraries expect. internal/server's TestInterop runs
// one scenario per process:
//
//   node rp.mjs <scenario>   with GATEHOUSE_ISSUER and the scenario's env
//
// Browser steps are the Go test's: the script prints
//   AUTHORIZE <url>   and reads a line  CALLBACK <url> | FORM <urlencoded body>
//   LOGOUT <url>      and reads a line  DONE <final url>
// and ends with  RESULT <json>  (exit 0) or an error (exit 1).
import * as client from 'openid-client'
import * as readline from 'node:readline'

const issuer = new URL(process.env.GATEHOUSE_ISSUER)
const env = (k) => {
  const v = process.env[k]
  if (!v) throw new Error(`${k} is not set`)
  return v
}

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]()
async function ask(what, url) {
  console.log(`${what} ${url}`)
  const { value, done } = await lines.next()
  if (done) throw new Error(`no answer to ${what}`)
  const i = value.indexOf(' ')
  return { kind: value.slice(0, i), value: value.slice(i + 1) }
}

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`)
}

// rejects runs fn and returns the OAuth error code it failed with.
async function rejects(fn) {
  try {
    await fn()
  } catch (e) {
    return e.error ?? e.code ?? e.message
  }
  throw new Error('expected a refusal, got success')
}

async function discover(clientId, clientSecret, metadata = {}, auth) {
  const config = await client.discovery(issuer, clientId, { ...metadata, ...(clientSecret ? { client_secret: clientSecret } : {}) },
    auth ?? (clientSecret ? client.ClientSecretBasic(clientSecret) : client.None()),
    { execute: [client.allowInsecureRequests] })
  // Verify the signatures of ID tokens (and of JWT userinfo, if any) with the
  // server's JWKS, not only the TLS channel: RS256 and ES256 both get checked.
  client.enableNonRepudiationChecks(config)
  return config
}

// codeFlow runs code + PKCE (S256) through the hosted pages and checks the
// callback (state, iss per RFC 9207) and the ID token (signature, nonce).
async function codeFlow(config, redirectURI, extra = {}) {
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const params = {
    redirect_uri: redirectURI, scope: 'openid email offline_access',
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    state, nonce, ...extra.params,
  }
  const url = extra.par ? await client.buildAuthorizationUrlWithPAR(config, params, extra.parOptions)
    : client.buildAuthorizationUrl(config, params)
  const answer = await ask('AUTHORIZE', url.href)
  let callback
  if (answer.kind === 'FORM') {
    callback = new Request(redirectURI, {
      method: 'POST', body: answer.value, headers: { 'content-type': 'application/x-www-form-urlencoded' },
    })
  } else {
    callback = new URL(answer.value)
    check(callback.searchParams.get('iss') === issuer.href.replace(/\/$/, ''), `iss in the callback: ${callback}`)
  }
  const tokens = await client.authorizationCodeGrant(config, callback,
    { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true }, extra.tokenParams, extra.grantOptions)
  return tokens
}

// privateKeyJwt is the library's private_key_jwt from a P-256 private JWK.
async function privateKeyJwt(jwkJSON) {
  const jwk = JSON.parse(jwkJSON)
  const key = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])
  return client.PrivateKeyJwt({ key, kid: jwk.kid })
}

function idTokenAlg(idToken) {
  return JSON.parse(Buffer.from(idToken.split('.')[0], 'base64url')).alg
}

const scenarios = {
  // Discovery lists what the other scenarios use.
  async discovery() {
    const config = await discover(env('RP_CLIENT_ID'), env('RP_CLIENT_SECRET'))
    const m = config.serverMetadata()
    check(m.issuer === issuer.href.replace(/\/$/, ''), `issuer ${m.issuer}`)
    check(m.authorization_response_iss_parameter_supported === true, 'authorization_response_iss_parameter_supported')
    check(m.response_modes_supported.includes('form_post'), 'form_post advertised')
    check(m.code_challenge_methods_supported.includes('S256'), 'S256 advertised')
    check(m.id_token_signing_alg_values_supported.includes('RS256'), 'RS256 advertised (OIDC Core §15.1)')
    check(m.id_token_signing_alg_values_supported.includes('ES256'), 'ES256 advertised')
    const jwks = await (await fetch(m.jwks_uri)).json()
    const algs = jwks.keys.map((k) => k.alg).sort()
    check(algs.includes('RS256') && algs.includes('ES256'), `JWKS key algorithms ${algs}`)
    check(jwks.keys.every((k) => !('d' in k) && k.use === 'sig' && k.kid), 'JWKS holds public signing keys with kids')
    check(m.pushed_authorization_request_endpoint === `${m.issuer}/auth/par`, 'PAR endpoint advertised')
    check(m.token_endpoint_auth_methods_supported.includes('private_key_jwt'), 'private_key_jwt advertised')
    check(m.backchannel_logout_supported === true && m.backchannel_logout_session_supported === true, 'back-channel logout advertised')
    check(m.dpop_signing_alg_values_supported.includes('ES256'), 'DPoP advertised')
    check(m.token_endpoint_auth_signing_alg_values_supported.includes('ES256'), 'ES256 assertions advertised')
    return { metadata: Object.keys(m).length }
  },

  // A confidential web app: code + PKCE, userinfo, refresh, introspection,
  // revocation, logout by GET and by POST.
  async confidential() {
    // An RP registered for ES256 tells the library so: it then refuses any
    // other alg, as it refuses anything but RS256 for the others.
    const expectAlg = process.env.RP_EXPECT_ALG ?? 'RS256'
    // RP_PRIVATE_JWK: authenticate with private_key_jwt (RFC 7523) instead
    // of the secret, at the token, introspection and revocation endpoints.
    const config = process.env.RP_PRIVATE_JWK
      ? await discover(env('RP_CLIENT_ID'), undefined, { id_token_signed_response_alg: expectAlg }, await privateKeyJwt(env('RP_PRIVATE_JWK')))
      : await discover(env('RP_CLIENT_ID'), env('RP_CLIENT_SECRET'), { id_token_signed_response_alg: expectAlg })
    // RP_PAR: push the authorization request first (RFC 9126).
    const tokens = await codeFlow(config, env('RP_REDIRECT_URI'), { par: !!process.env.RP_PAR })
    const claims = tokens.claims()
    check(claims.sub === env('RP_EXPECT_SUB'), `sub ${claims.sub}`)
    const alg = idTokenAlg(tokens.id_token)
    check(alg === expectAlg, `ID token alg ${alg}`)
    const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
    check(info.email === env('RP_EXPECT_EMAIL'), `userinfo email ${info.email}`)
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)
    check(refreshed.access_token && refreshed.access_token !== tokens.access_token, 'a new access token')
    const active = await client.tokenIntrospection(config, refreshed.access_token)
    check(active.active === true && active.sub === claims.sub, `introspection ${JSON.stringify(active)}`)
    await client.tokenRevocation(config, refreshed.refresh_token)
    const code = await rejects(() => client.refreshTokenGrant(config, refreshed.refresh_token))
    check(code === 'invalid_grant', `refresh after revocation: ${code}`)
    const logout = client.buildEndSessionUrl(config, {
      id_token_hint: refreshed.id_token ?? tokens.id_token, post_logout_redirect_uri: env('RP_POST_LOGOUT_URI'), state: 'bye-state-0123',
    })
    const done = await ask(process.env.RP_LOGOUT_BY_POST ? 'LOGOUT_POST' : 'LOGOUT', logout.href)
    const back = new URL(done.value)
    check(back.href.startsWith(env('RP_POST_LOGOUT_URI')) && back.searchParams.get('state') === 'bye-state-0123', `logout ended at ${back}`)
    return { alg, sub: claims.sub }
  },

  // DPoP (RFC 9449): tokens bound to the app's key, the nonce round trip,
  // userinfo with a proof, refresh with the same key only.
  async dpop() {
    const config = await discover(env('RP_CLIENT_ID'), env('RP_CLIENT_SECRET'))
    check(config.serverMetadata().dpop_signing_alg_values_supported.includes('ES256'), 'ES256 DPoP proofs advertised')
    const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'))
    const tokens = await codeFlow(config, env('RP_REDIRECT_URI'), { grantOptions: { DPoP } })
    check(tokens.token_type.toLowerCase() === 'dpop', `token_type ${tokens.token_type}`)
    const info = await client.fetchUserInfo(config, tokens.access_token, tokens.claims().sub, { DPoP })
    check(info.sub === env('RP_EXPECT_SUB'), `userinfo sub ${info.sub}`)
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP })
    check(refreshed.token_type.toLowerCase() === 'dpop', `refreshed token_type ${refreshed.token_type}`)
    const intro = await client.tokenIntrospection(config, refreshed.access_token)
    check(intro.active && intro.token_type === 'DPoP' && intro.cnf?.jkt, `introspection ${JSON.stringify(intro)}`)
    const other = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'))
    const code = await rejects(() => client.refreshTokenGrant(config, refreshed.refresh_token, undefined, { DPoP: other }))
    check(code === 'invalid_dpop_proof', `refresh with another key: ${code}`)
    return { jkt: intro.cnf.jkt }
  },

  // A public single-page app: PKCE with no secret, form_post callback.
  async formPost() {
    const config = await discover(env('RP_CLIENT_ID'))
    const tokens = await codeFlow(config, env('RP_REDIRECT_URI'), { params: { response_mode: 'form_post' } })
    check(tokens.claims().sub === env('RP_EXPECT_SUB'), 'sub')
    return { alg: idTokenAlg(tokens.id_token) }
  },

  // A browser SPA's preflight to the token endpoint.
  async cors() {
    const config = await discover(env('RP_CLIENT_ID'))
    const res = await fetch(config.serverMetadata().token_endpoint, {
      method: 'OPTIONS',
      headers: { origin: env('RP_ORIGIN'), 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,dpop' },
    })
    const allow = res.headers.get('access-control-allow-origin')
    check(res.status === 204 && allow === env('RP_ORIGIN'), `preflight ${res.status} ${allow}`)
    const other = await fetch(config.serverMetadata().token_endpoint, {
      method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    })
    check(!other.headers.get('access-control-allow-origin'), 'no CORS for an unlisted origin')
    return { status: res.status }
  },

  // A service: client_credentials with a resource indicator (RFC 8707).
  async resource() {
    const config = await discover(env('RP_CLIENT_ID'), env('RP_CLIENT_SECRET'))
    const tokens = await client.clientCredentialsGrant(config, { resource: env('RP_RESOURCE') })
    const intro = await client.tokenIntrospection(config, tokens.access_token)
    const aud = [].concat(intro.aud)
    check(aud.length === 1 && aud[0] === env('RP_RESOURCE'), `aud ${JSON.stringify(intro.aud)}`)
    const code = await rejects(() => client.clientCredentialsGrant(config, { resource: 'https://not-listed.example' }))
    check(code === 'invalid_target', `unlisted resource: ${code}`)
    return { aud }
  },
}

const name = process.argv[2]
if (!scenarios[name]) {
  console.error(`unknown scenario ${name}; one of ${Object.keys(scenarios).join(', ')}`)
  process.exit(2)
}
try {
  const result = await scenarios[name]()
  console.log(`RESULT ${JSON.stringify(result)}`)
  process.exit(0)
} catch (e) {
  console.error(`${name}: ${e.stack ?? e}`)
  if (e.cause) console.error('cause:', JSON.stringify(e.cause))
  process.exit(1)
}
