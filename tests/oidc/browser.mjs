// The user's browser for tests/oidc.rs: opens a device verification URL (the one with the
// user code) and submits the provider's forms as a person clicking "Continue" would, keeping
// cookies and following redirects, until the provider says the sign-in succeeded.
// Usage: node browser.mjs VERIFICATION_URI_COMPLETE
const jar = new Map();
const decode = (s) => s.replace(/&quot;/g, '"').replace(/&#x27;/g, "'").replace(/&#39;/g, "'")
  .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#x2F;/g, '/').replace(/&amp;/g, '&');

let url = process.argv[2];
let method = 'GET';
let body;
for (let step = 0; step < 20; step += 1) {
  const headers = { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
  if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
  const res = await fetch(url, { method, body, headers, redirect: 'manual' });
  for (const c of res.headers.getSetCookie()) {
    const pair = c.split(';')[0];
    const eq = pair.indexOf('=');
    jar.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  if (res.status >= 300 && res.status < 400) {
    url = new URL(res.headers.get('location'), url).href;
    method = 'GET';
    body = undefined;
    continue;
  }
  const html = await res.text();
  if (html.includes('Sign-in Success')) {
    console.log('approved');
    process.exit(0);
  }
  const form = html.match(/<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/);
  if (!form) {
    console.error(`no form at ${url} (HTTP ${res.status}): ${html.slice(0, 400)}`);
    process.exit(1);
  }
  const fields = [...form[2].matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)"\/>/g)];
  url = new URL(decode(form[1]), url).href;
  method = 'POST';
  body = new URLSearchParams(fields.map(([, k, v]) => [k, decode(v)])).toString();
}
console.error('the sign-in did not finish in 20 steps');
process.exit(1);
