//! Issue 19: bearer JWTs from an OpenID Connect issuer, for `arsync serve`.
//!
//! Owns the `[oidc]` settings, the issuer's discovery document (`ISSUER/.well-known/
//! openid-configuration`), its key set (JWKS: fetched on first use, kept an hour, fetched again
//! when a token names an unknown `kid` — at most once per `jwks_refetch_interval` — so a key
//! rotation is followed and a removed key stops working), the JWT checks (compact form, `alg`
//! RS256 or ES256 only, signature with `ring`, `iss`, `aud`, `exp`, `nbf` with a small
//! leeway) and the mapping of claims to what a session may do: the modules claim (a list, or a
//! space-separated string; `*` is every module) and the write scope (in `scope` or `scp`;
//! without it a token is read-only), as a token file's `modules` and `scope` are.
//!
//! Does not own: HTTP (`http`), the daemon's module and path checks (`serve_policy`), getting a
//! token as a client (`device`). Not supported: encrypted tokens (JWE), HMAC algorithms, token
//! introspection or revocation lists (a JWT is good until its `exp`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arsync_core::negotiate::overlay::json::{self, Json};
use base64::Engine as _;
use serde::Deserialize;

use crate::http::{self, clip};
use crate::token::{utc_text, Scope};
use crate::AuthError;

/// The longest JWT looked at (the admission request allows no more either).
pub const MAX_JWT: usize = 8 * 1024;
/// The most keys kept from a key set.
const MAX_KEYS: usize = 64;
/// How long a fetched key set is used before it is fetched again.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);

fn default_modules_claim() -> String {
    "arsync_modules".into()
}
fn default_write_scope() -> String {
    "arsync:write".into()
}
fn default_leeway() -> u64 {
    5
}
fn default_refetch() -> u64 {
    10
}

/// `[oidc]` in `serve.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer, exactly as tokens' `iss` and the discovery document's `issuer` say.
    pub issuer: String,
    /// What a token's `aud` must contain.
    pub audience: String,
    /// The claim listing the modules a token covers (default `arsync_modules`).
    #[serde(default = "default_modules_claim")]
    pub modules_claim: String,
    /// The scope (in `scope` or `scp`) that allows writing (default `arsync:write`).
    #[serde(default = "default_write_scope")]
    pub write_scope: String,
    /// Seconds of clock difference forgiven on `exp` and `nbf` (default 5).
    #[serde(default = "default_leeway")]
    pub leeway: u64,
    /// The fewest seconds between two key-set fetches for an unknown `kid` (default 10).
    #[serde(default = "default_refetch")]
    pub jwks_refetch_interval: u64,
    /// CA certificates (PEM) for an https issuer; default the system's bundle.
    pub ca_file: Option<PathBuf>,
}

/// Why a JWT is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtRefusal {
    /// Not three base64url parts of JSON, or a claim of the wrong type.
    #[error("malformed: {0}")]
    Malformed(String),
    /// An algorithm other than RS256 and ES256.
    #[error("algorithm {0:?} is not accepted (RS256 or ES256)")]
    Algorithm(String),
    /// No key of the issuer's has this `kid` (and the key set was fetched again recently).
    #[error("signed with a key the issuer does not publish (kid {})", kid_text(.0))]
    UnknownKey(Option<String>),
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// Another issuer's.
    #[error("issued by {0:?}")]
    Issuer(String),
    /// Not for this server.
    #[error("not for audience {0:?}")]
    Audience(String),
    /// Past its `exp`.
    #[error("expired at {0}")]
    Expired(String),
    /// Before its `nbf`.
    #[error("not valid before {0}")]
    NotYetValid(String),
    /// No modules claim, or an empty one.
    #[error("no {0:?} claim naming modules")]
    NoModules(String),
    /// The modules claim does not name this module.
    #[error("not valid for module {0:?}")]
    NotForModule(String),
}

fn kid_text(kid: &Option<String>) -> String {
    kid.as_deref()
        .map_or_else(|| "none".to_owned(), |k| format!("{:?}", clip(k)))
}

/// What a verified token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Its `sub` (for the log).
    pub subject: String,
    /// Read-only unless it carries the write scope.
    pub scope: Scope,
    /// The modules it covers; empty: all (`*`).
    pub modules: Vec<String>,
}

/// Whether `s` has a JWT's shape: three dot-separated parts of base64url characters (the
/// daemon's own tokens, `arsync_…`, have no dot).
pub fn looks_like_jwt(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The parts of the issuer's discovery document arsync uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// `issuer`.
    pub issuer: String,
    /// `jwks_uri`.
    pub jwks_uri: String,
    /// `token_endpoint`, if any.
    pub token_endpoint: Option<String>,
    /// `device_authorization_endpoint`, if any.
    pub device_authorization_endpoint: Option<String>,
}

/// A JSON object from a response of the issuer's (status 200, an object).
pub(crate) fn json_object(url: &str, r: &http::Response) -> Result<Json, AuthError> {
    let bad = |reason: String| AuthError::BadDocument {
        url: url.to_owned(),
        reason,
    };
    match json::parse(&r.body) {
        Ok(m @ Json::Obj(_)) => Ok(m),
        Ok(_) => Err(bad(format!("HTTP {}: not a JSON object", r.status))),
        Err(e) => Err(bad(format!("HTTP {}: not JSON: {e}", r.status))),
    }
}

fn endpoint(url: &str, doc: &Json, key: &str) -> Result<Option<String>, AuthError> {
    match doc.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Str(s)) => {
            // The same rule as the issuer's own URL: https, or plain http on loopback.
            http::Url::parse(s)?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(AuthError::BadDocument {
            url: url.to_owned(),
            reason: format!("{key} is not a string"),
        }),
    }
}

impl Discovery {
    /// Fetch `issuer`'s discovery document; its `issuer` must be `issuer` exactly.
    pub fn fetch(client: &mut http::Client, issuer: &str) -> Result<Discovery, AuthError> {
        http::Url::parse(issuer)?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let r = client.get(&url)?;
        if r.status != 200 {
            return Err(AuthError::BadDocument {
                url,
                reason: format!("HTTP {}", r.status),
            });
        }
        let doc = json_object(&url, &r)?;
        let said = doc.get("issuer").and_then(Json::as_str).unwrap_or("");
        if said != issuer {
            return Err(AuthError::BadDocument {
                url,
                reason: format!("it names issuer {:?}, not {issuer:?}", clip(said)),
            });
        }
        Ok(Discovery {
            issuer: issuer.to_owned(),
            jwks_uri: endpoint(&url, &doc, "jwks_uri")?.ok_or_else(|| AuthError::BadDocument {
                url: url.clone(),
                reason: "no jwks_uri".into(),
            })?,
            token_endpoint: endpoint(&url, &doc, "token_endpoint")?,
            device_authorization_endpoint: endpoint(&url, &doc, "device_authorization_endpoint")?,
        })
    }
}

/// A public key of the issuer's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyMaterial {
    /// RS256: modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// ES256: the uncompressed P-256 point.
    P256(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Jwk {
    kid: Option<String>,
    material: KeyMaterial,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// The signing keys of a JWKS document this code can use (others — encryption keys, other
/// curves — are skipped), at most [`MAX_KEYS`].
fn parse_jwks(url: &str, r: &http::Response) -> Result<Vec<Jwk>, AuthError> {
    let doc = json_object(url, r)?;
    let Some(Json::Arr(keys)) = doc.get("keys") else {
        return Err(AuthError::BadDocument {
            url: url.to_owned(),
            reason: "no \"keys\" list".into(),
        });
    };
    let mut out = Vec::new();
    for k in keys.iter().take(MAX_KEYS) {
        let s = |name: &str| k.get(name).and_then(Json::as_str);
        if s("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let material = match (s("kty"), s("crv")) {
            (Some("RSA"), _) if s("alg").is_none_or(|a| a == "RS256") => {
                match (s("n").and_then(b64), s("e").and_then(b64)) {
                    (Some(n), Some(e)) => KeyMaterial::Rsa { n, e },
                    _ => continue,
                }
            }
            (Some("EC"), Some("P-256")) if s("alg").is_none_or(|a| a == "ES256") => {
                match (s("x").and_then(b64), s("y").and_then(b64)) {
                    (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                        let mut p = vec![4u8];
                        p.extend_from_slice(&x);
                        p.extend_from_slice(&y);
                        KeyMaterial::P256(p)
                    }
                    _ => continue,
                }
            }
            _ => continue,
        };
        out.push(Jwk {
            kid: s("kid").map(str::to_owned),
            material,
        });
    }
    Ok(out)
}

/// A JWT split and decoded, not yet trusted.
#[derive(Debug)]
struct Parsed {
    alg: String,
    kid: Option<String>,
    claims: Json,
    signed: String,
    signature: Vec<u8>,
}

fn parse_jwt(token: &str) -> Result<Parsed, JwtRefusal> {
    let bad = |m: &str| JwtRefusal::Malformed(m.to_owned());
    if token.len() > MAX_JWT {
        return Err(bad("longer than 8 KiB"));
    }
    if !looks_like_jwt(token) {
        return Err(bad("not header.payload.signature in base64url"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("not three parts"));
    };
    let object = |part: &str, what: &str| -> Result<Json, JwtRefusal> {
        let bytes = b64(part).ok_or_else(|| bad(&format!("{what} is not base64url")))?;
        match json::parse(&bytes) {
            Ok(m @ Json::Obj(_)) => Ok(m),
            _ => Err(bad(&format!("{what} is not a JSON object"))),
        }
    };
    let header = object(h, "header")?;
    let claims = object(p, "payload")?;
    let alg = header
        .get("alg")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("no alg"))?
        .to_owned();
    if header.get("crit").is_some() {
        return Err(bad("critical header extensions are not supported"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Json::Str(k)) => Some(k.clone()),
        Some(_) => return Err(bad("kid is not a string")),
    };
    Ok(Parsed {
        alg,
        kid,
        claims,
        signed: format!("{h}.{p}"),
        signature: b64(s).ok_or_else(|| bad("signature is not base64url"))?,
    })
}

fn signature_ok(key: &KeyMaterial, alg: &str, msg: &[u8], sig: &[u8]) -> bool {
    use ring::signature;
    match (key, alg) {
        (KeyMaterial::Rsa { n, e }, "RS256") => signature::RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
            .is_ok(),
        (KeyMaterial::P256(point), "ES256") => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        _ => false,
    }
}

fn key_fits(key: &KeyMaterial, alg: &str) -> bool {
    matches!(
        (key, alg),
        (KeyMaterial::Rsa { .. }, "RS256") | (KeyMaterial::P256(_), "ES256")
    )
}

/// A list of strings, or one string of space-separated words (as `scope` is).
fn words(v: Option<&Json>) -> Vec<String> {
    match v {
        Some(Json::Str(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Json::Arr(a)) => a
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn seconds(claims: &Json, name: &str) -> Result<Option<u64>, JwtRefusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            // Whole seconds; a fraction is dropped, a value past u64 saturates.
            .map(|f| Some(f as u64))
            .ok_or_else(|| JwtRefusal::Malformed(format!("{name} is not a number of seconds"))),
    }
}

/// What the key cache holds.
#[derive(Debug)]
struct KeyCache {
    http: http::Client,
    jwks_uri: Option<String>,
    keys: Vec<Jwk>,
    /// When `keys` were fetched.
    fetched: Option<Instant>,
    /// When a fetch was last tried (the rate limit).
    tried: Option<Instant>,
}

/// Verifies JWTs for one `[oidc]` issuer, keeping its keys.
#[derive(Debug)]
pub struct OidcVerifier {
    config: OidcConfig,
    cache: Mutex<KeyCache>,
}

impl OidcVerifier {
    /// A verifier for `config`; nothing is fetched until the first token.
    pub fn new(config: OidcConfig) -> Result<OidcVerifier, AuthError> {
        http::Url::parse(&config.issuer)?;
        let http = http::Client::new(config.ca_file.as_deref());
        Ok(OidcVerifier {
            config,
            cache: Mutex::new(KeyCache {
                http,
                jwks_uri: None,
                keys: Vec::new(),
                fetched: None,
                tried: None,
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    fn refetch(&self, c: &mut KeyCache) -> Result<(), AuthError> {
        c.tried = Some(Instant::now());
        let uri = match &c.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let d = Discovery::fetch(&mut c.http, &self.config.issuer)?;
                c.jwks_uri = Some(d.jwks_uri.clone());
                d.jwks_uri
            }
        };
        let r = c.http.get(&uri)?;
        if r.status != 200 {
            return Err(AuthError::BadDocument {
                url: uri,
                reason: format!("HTTP {}", r.status),
            });
        }
        c.keys = parse_jwks(&uri, &r)?;
        c.fetched = Some(Instant::now());
        Ok(())
    }

    /// The key for `kid` and `alg`: from the cache, or fetched (on first use, when the set is
    /// old, or for an unknown `kid` when the last fetch is `jwks_refetch_interval` old).
    fn key(&self, kid: Option<&str>, alg: &str) -> Result<KeyMaterial, AuthError> {
        let mut c = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let find = |c: &KeyCache| {
            c.keys
                .iter()
                .find(|k| key_fits(&k.material, alg) && (kid.is_none() || k.kid.as_deref() == kid))
                .map(|k| k.material.clone())
        };
        let stale = c.fetched.is_none_or(|t| t.elapsed() >= KEYS_MAX_AGE);
        let may_retry = c
            .tried
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(self.config.jwks_refetch_interval));
        if stale && may_retry {
            // An old set still serves if the issuer cannot be reached.
            if let Err(e) = self.refetch(&mut c) {
                if c.keys.is_empty() {
                    return Err(e);
                }
            }
        }
        if let Some(k) = find(&c) {
            return Ok(k);
        }
        let may_retry = c
            .tried
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(self.config.jwks_refetch_interval));
        if may_retry {
            self.refetch(&mut c)?;
            if let Some(k) = find(&c) {
                return Ok(k);
            }
        }
        Err(JwtRefusal::UnknownKey(kid.map(str::to_owned)).into())
    }

    /// Check `token` for `module` at `now_unix`: what it allows, or why not.
    pub fn verify(&self, token: &str, module: &str, now_unix: u64) -> Result<Grant, AuthError> {
        let p = parse_jwt(token)?;
        if p.alg != "RS256" && p.alg != "ES256" {
            return Err(JwtRefusal::Algorithm(clip(&p.alg)).into());
        }
        let key = self.key(p.kid.as_deref(), &p.alg)?;
        if !signature_ok(&key, &p.alg, p.signed.as_bytes(), &p.signature) {
            return Err(JwtRefusal::Signature.into());
        }
        Ok(self.grant(&p.claims, module, now_unix)?)
    }

    /// The claims' checks and mapping, once the signature is good.
    fn grant(&self, claims: &Json, module: &str, now: u64) -> Result<Grant, JwtRefusal> {
        let cfg = &self.config;
        let iss = claims.get("iss").and_then(Json::as_str).unwrap_or("");
        if iss != cfg.issuer {
            return Err(JwtRefusal::Issuer(clip(iss)));
        }
        if !words(claims.get("aud")).contains(&cfg.audience) {
            return Err(JwtRefusal::Audience(cfg.audience.clone()));
        }
        let exp = seconds(claims, "exp")?.ok_or_else(|| JwtRefusal::Malformed("no exp".into()))?;
        if now >= exp.saturating_add(cfg.leeway) {
            return Err(JwtRefusal::Expired(utc_text(exp)));
        }
        if let Some(nbf) = seconds(claims, "nbf")? {
            if now.saturating_add(cfg.leeway) < nbf {
                return Err(JwtRefusal::NotYetValid(utc_text(nbf)));
            }
        }
        let mut modules = words(claims.get(&cfg.modules_claim));
        if modules.is_empty() {
            return Err(JwtRefusal::NoModules(cfg.modules_claim.clone()));
        }
        if modules.iter().any(|m| m == "*") {
            modules.clear();
        } else if !modules.iter().any(|m| m == module) {
            return Err(JwtRefusal::NotForModule(module.to_owned()));
        }
        let mut scopes = words(claims.get("scope"));
        scopes.extend(words(claims.get("scp")));
        Ok(Grant {
            subject: clip(claims.get("sub").and_then(Json::as_str).unwrap_or("?")),
            scope: if scopes.contains(&cfg.write_scope) {
                Scope::ReadWrite
            } else {
                Scope::ReadOnly
            },
            modules,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ring::signature::{self, KeyPair};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    fn enc(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// A JSON object for a test: keys and their values as JSON text.
    type Obj = Vec<(&'static str, String)>;

    /// A JSON string (the tests' strings hold no quote or backslash).
    fn q(s: &str) -> String {
        format!("\"{s}\"")
    }

    fn text(o: &[(&str, String)]) -> String {
        let members: Vec<String> = o.iter().map(|(k, v)| format!("{}:{v}", q(k))).collect();
        format!("{{{}}}", members.join(","))
    }

    fn set(o: &mut Obj, key: &'static str, value: String) {
        o.retain(|(k, _)| *k != key);
        o.push((key, value));
    }

    /// A signing key of the test issuer's, ES256 or RS256.
    enum TestKey {
        Ec(signature::EcdsaKeyPair),
        Rsa(signature::RsaKeyPair),
    }

    impl TestKey {
        fn ec() -> TestKey {
            let rng = ring::rand::SystemRandom::new();
            let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pk8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            TestKey::Ec(signature::EcdsaKeyPair::from_pkcs8(alg, pk8.as_ref(), &rng).unwrap())
        }

        fn rsa() -> TestKey {
            // A 2048-bit key made for this test with `openssl genpkey` (PKCS#1 DER).
            let der = include_bytes!("../tests/data/rsa2048.der");
            TestKey::Rsa(signature::RsaKeyPair::from_der(der).unwrap())
        }

        fn jwk(&self, kid: &str) -> String {
            match self {
                TestKey::Ec(k) => {
                    let p = k.public_key().as_ref();
                    text(&[
                        ("kty", q("EC")),
                        ("crv", q("P-256")),
                        ("kid", q(kid)),
                        ("use", q("sig")),
                        ("x", q(&enc(&p[1..33]))),
                        ("y", q(&enc(&p[33..65]))),
                    ])
                }
                TestKey::Rsa(k) => {
                    let pk = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                    text(&[
                        ("kty", q("RSA")),
                        ("kid", q(kid)),
                        ("alg", q("RS256")),
                        ("n", q(&enc(&pk.n))),
                        ("e", q(&enc(&pk.e))),
                    ])
                }
            }
        }

        fn sign(&self, kid: &str, claims: &[(&str, String)]) -> String {
            let alg = match self {
                TestKey::Ec(_) => "ES256",
                TestKey::Rsa(_) => "RS256",
            };
            let h = enc(text(&[("alg", q(alg)), ("kid", q(kid)), ("typ", q("JWT"))]).as_bytes());
            let p = enc(text(claims).as_bytes());
            let msg = format!("{h}.{p}");
            let rng = ring::rand::SystemRandom::new();
            let sig = match self {
                TestKey::Ec(k) => k.sign(&rng, msg.as_bytes()).unwrap().as_ref().to_vec(),
                TestKey::Rsa(k) => {
                    let mut s = vec![0; k.public().modulus_len()];
                    k.sign(&signature::RSA_PKCS1_SHA256, &rng, msg.as_bytes(), &mut s)
                        .unwrap();
                    s
                }
            };
            format!("{msg}.{}", enc(&sig))
        }
    }

    /// A real HTTP issuer on loopback serving a discovery document and the key set in `jwks`
    /// (replaceable: a rotation), counting key-set fetches.
    struct Issuer {
        url: String,
        jwks: Arc<Mutex<String>>,
        fetches: Arc<Mutex<u32>>,
    }

    fn issuer() -> Issuer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let jwks = Arc::new(Mutex::new(keys(&[])));
        let fetches = Arc::new(Mutex::new(0));
        let (u, j, f) = (url.clone(), jwks.clone(), fetches.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let mut s = s.unwrap();
                let mut req = [0u8; 4096];
                let n = s.read(&mut req).unwrap_or(0);
                let req = String::from_utf8_lossy(&req[..n]).into_owned();
                let body = if req.starts_with("GET /.well-known/openid-configuration ") {
                    text(&[("issuer", q(&u)), ("jwks_uri", q(&format!("{u}/jwks")))])
                } else {
                    *f.lock().unwrap() += 1;
                    j.lock().unwrap().clone()
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Issuer { url, jwks, fetches }
    }

    const NOW: u64 = 1_800_000_000;

    fn config(iss: &Issuer) -> OidcConfig {
        toml::from_str(&format!(
            "issuer = \"{}\"\naudience = \"urn:arsync\"\njwks_refetch_interval = 0\n",
            iss.url
        ))
        .unwrap()
    }

    /// A key set of these keys.
    fn keys(jwks: &[String]) -> String {
        format!("{{\"keys\":[{}]}}", jwks.join(","))
    }

    fn claims(iss: &Issuer) -> Obj {
        vec![
            ("iss", q(&iss.url)),
            ("aud", "[\"urn:arsync\",\"other\"]".into()),
            ("sub", q("alice")),
            ("exp", (NOW + 60).to_string()),
            ("nbf", (NOW - 1).to_string()),
            ("scope", q("openid arsync:write")),
            ("arsync_modules", "[\"data\",\"photos\"]".into()),
        ]
    }

    fn refused(v: &OidcVerifier, token: &str, module: &str) -> JwtRefusal {
        match v.verify(token, module, NOW) {
            Err(AuthError::Jwt(r)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn good_tokens_map_to_modules_and_scope() {
        let iss = issuer();
        let (ec, rsa) = (TestKey::ec(), TestKey::rsa());
        *iss.jwks.lock().unwrap() = keys(&[
            ec.jwk("e1"),
            rsa.jwk("r1"),
            text(&[("kty", q("oct")), ("k", q("c2VjcmV0"))]),
            text(&[
                ("kty", q("EC")),
                ("crv", q("P-384")),
                ("x", q("")),
                ("y", q("")),
            ]),
        ]);
        let v = OidcVerifier::new(config(&iss)).unwrap();
        for (key, kid) in [(&ec, "e1"), (&rsa, "r1")] {
            let g = v
                .verify(&key.sign(kid, &claims(&iss)), "photos", NOW)
                .unwrap();
            assert_eq!(g.subject, "alice");
            assert_eq!(g.scope, Scope::ReadWrite);
            assert_eq!(g.modules, ["data", "photos"]);
        }
        let mut c = claims(&iss);
        set(&mut c, "scope", q("openid"));
        set(&mut c, "arsync_modules", q("*"));
        set(&mut c, "aud", q("urn:arsync"));
        let g = v.verify(&ec.sign("e1", &c), "anything", NOW).unwrap();
        assert_eq!((g.scope, g.modules.len()), (Scope::ReadOnly, 0));
        assert_eq!(*iss.fetches.lock().unwrap(), 1, "the key set is cached");
        assert!(looks_like_jwt(&ec.sign("e1", &c)));
        assert!(
            !looks_like_jwt("arsync_00ff") && !looks_like_jwt("a.b") && !looks_like_jwt("a b.c.d")
        );
    }

    #[test]
    fn every_check_refuses() {
        let iss = issuer();
        let (ec, rsa) = (TestKey::ec(), TestKey::rsa());
        *iss.jwks.lock().unwrap() = keys(&[ec.jwk("e1"), rsa.jwk("r1")]);
        let v = OidcVerifier::new(config(&iss)).unwrap();
        let with = |k: &'static str, val: String| {
            let mut c = claims(&iss);
            set(&mut c, k, val);
            ec.sign("e1", &c)
        };
        assert!(matches!(
            refused(&v, &with("iss", q("https://evil")), "data"),
            JwtRefusal::Issuer(_)
        ));
        assert!(matches!(
            refused(&v, &with("aud", q("urn:other")), "data"),
            JwtRefusal::Audience(_)
        ));
        assert!(matches!(
            refused(&v, &with("exp", (NOW - 6).to_string()), "data"),
            JwtRefusal::Expired(_)
        ));
        assert!(
            v.verify(&with("exp", (NOW - 4).to_string()), "data", NOW)
                .is_ok(),
            "5 s leeway"
        );
        assert!(matches!(
            refused(&v, &with("nbf", (NOW + 60).to_string()), "data"),
            JwtRefusal::NotYetValid(_)
        ));
        assert!(matches!(
            refused(&v, &with("exp", q("soon")), "data"),
            JwtRefusal::Malformed(_)
        ));
        assert!(matches!(
            refused(&v, &with("arsync_modules", "[]".into()), "data"),
            JwtRefusal::NoModules(_)
        ));
        assert!(matches!(
            refused(&v, &ec.sign("e1", &claims(&iss)), "music"),
            JwtRefusal::NotForModule(_)
        ));
        // A changed payload under the old signature, an RSA signature under an EC kid.
        let good = ec.sign("e1", &claims(&iss));
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = enc(with("sub", q("mallory"))
            .split('.')
            .nth(1)
            .map(|p| b64(p).unwrap())
            .unwrap()
            .as_slice());
        assert_eq!(refused(&v, &parts.join("."), "data"), JwtRefusal::Signature);
        let rsa_sig = rsa.sign("e1", &claims(&iss));
        assert!(matches!(
            refused(&v, &rsa_sig, "data"),
            JwtRefusal::UnknownKey(_)
        ));
        // alg none and HS256 are never accepted, whatever the key set holds.
        for alg in ["none", "HS256"] {
            let h = enc(text(&[("alg", q(alg)), ("kid", q("e1"))]).as_bytes());
            let t = format!("{h}.{}.{}", good.split('.').nth(1).unwrap(), enc(b"x"));
            assert_eq!(refused(&v, &t, "data"), JwtRefusal::Algorithm(alg.into()));
        }
        for junk in ["a.b.c", "e30.e30.", &"a".repeat(MAX_JWT + 1)] {
            assert!(
                matches!(refused(&v, junk, "data"), JwtRefusal::Malformed(_)),
                "{junk:.20}"
            );
        }
    }

    #[test]
    fn an_unknown_kid_fetches_the_keys_again_at_a_limited_rate() {
        let iss = issuer();
        let (old, new) = (TestKey::ec(), TestKey::ec());
        *iss.jwks.lock().unwrap() = keys(&[old.jwk("k1")]);
        let mut cfg = config(&iss);
        cfg.jwks_refetch_interval = 3600;
        let v = OidcVerifier::new(cfg.clone()).unwrap();
        let old_token = old.sign("k1", &claims(&iss));
        v.verify(&old_token, "data", NOW).unwrap();
        // The issuer rotates: only the new key is published.
        *iss.jwks.lock().unwrap() = keys(&[new.jwk("k2")]);
        let new_token = new.sign("k2", &claims(&iss));
        // Within the interval the set is not fetched again: refused, and no fetch.
        assert!(matches!(
            refused(&v, &new_token, "data"),
            JwtRefusal::UnknownKey(Some(_))
        ));
        assert_eq!(*iss.fetches.lock().unwrap(), 1);
        // With no interval, the unknown kid brings the new set; the old key is gone.
        cfg.jwks_refetch_interval = 0;
        let v = OidcVerifier {
            config: cfg,
            cache: v.cache,
        };
        v.verify(&new_token, "data", NOW).unwrap();
        assert_eq!(*iss.fetches.lock().unwrap(), 2);
        assert!(matches!(
            refused(&v, &old_token, "data"),
            JwtRefusal::UnknownKey(Some(_))
        ));
    }

    #[test]
    fn a_broken_issuer_is_an_error_not_a_panic() {
        // Nothing listens: a fetch error.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let cfg: OidcConfig =
            toml::from_str(&format!("issuer = \"{url}\"\naudience = \"a\"\n")).unwrap();
        let v = OidcVerifier::new(cfg).unwrap();
        let t = TestKey::ec().sign("k", &[]);
        assert!(matches!(
            v.verify(&t, "m", NOW),
            Err(AuthError::Fetch { .. })
        ));
        // An issuer on the network over plain http is refused before any request.
        let cfg: OidcConfig =
            toml::from_str("issuer = \"http://id.example.com\"\naudience = \"a\"\n").unwrap();
        assert!(OidcVerifier::new(cfg).is_err());
        // A key set that is not one.
        let iss = issuer();
        *iss.jwks.lock().unwrap() = "[\"not\", \"an\", \"object\"]".into();
        let v = OidcVerifier::new(config(&iss)).unwrap();
        assert!(matches!(
            v.verify(&t, "m", NOW),
            Err(AuthError::BadDocument { .. })
        ));
    }
}
