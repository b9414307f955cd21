//! Issue 19: `arsync login` — the OAuth2 device authorization grant (RFC 8628) against an
//! OpenID Connect issuer, the stored login, and its silent refresh.
//!
//! Owns the requests (the device authorization request, the token endpoint polled at the
//! server's `interval`, five seconds more after each `slow_down`, until `expires_in`), the
//! token response's checks and bounds, the login file (one per issuer under
//! `CONFIG/arsync/oidc/`, TOML, mode 0600 in a 0700 directory, written through a rename) and
//! the refresh (with the refresh token, when less than [`REFRESH_MARGIN`] of the access token
//! is left). Does not own printing or sleeping (the caller's: [`Pending::poll`] takes a sleep
//! function), nor checking tokens (the server's, `oidc`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use arsync_core::negotiate::overlay::json::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http::{self, clip, printable};
use crate::oidc::{json_object, Discovery, MAX_JWT};
use crate::{create_private_dir, io_err, write_atomically, AuthError};

/// The client id `arsync login` uses unless told another.
pub const DEFAULT_CLIENT_ID: &str = "arsync";
/// The scopes asked for unless told others: an id, a refresh token, and writing.
pub const DEFAULT_SCOPE: &str = "openid offline_access arsync:write";
/// An access token with less than this left is refreshed before use.
pub const REFRESH_MARGIN: u64 = 30;
/// The longest poll interval honoured (a server asking for more is still polled this often).
const MAX_INTERVAL: u64 = 60;
/// The longest refresh token or code kept.
const MAX_SECRET: usize = 4096;

/// The device authorization response: what the user is shown, and what is polled with.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Where the user goes.
    pub verification_uri: String,
    /// The same with the code filled in, if the server gives one.
    pub verification_uri_complete: Option<String>,
    /// The code the user types.
    pub user_code: String,
    device_code: String,
    /// Seconds between polls (5 unless the server says otherwise).
    pub interval: u64,
    /// Seconds the codes are valid.
    pub expires_in: u64,
    token_endpoint: String,
    issuer: String,
    client_id: String,
}

/// A stored login: the tokens for one issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The issuer.
    pub issuer: String,
    /// The client id the tokens were issued to.
    pub client_id: String,
    /// Where refreshes go.
    pub token_endpoint: String,
    /// The bearer credential sent to `arsync serve`.
    pub access_token: String,
    /// Unix seconds when the access token ends.
    pub expires_at: u64,
    /// For getting a new access token without the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

fn bad(url: &str, reason: impl Into<String>) -> AuthError {
    AuthError::BadDocument {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

fn string(url: &str, doc: &Json, key: &str, max: usize) -> Result<Option<String>, AuthError> {
    match doc.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Str(s)) if !s.is_empty() && s.len() <= max => Ok(Some(s.clone())),
        Some(_) => Err(bad(url, format!("{key}: not a string of 1 to {max} bytes"))),
    }
}

/// A string shown to the user as it is: no control characters.
fn shown(url: &str, doc: &Json, key: &str, max: usize) -> Result<Option<String>, AuthError> {
    match string(url, doc, key, max)? {
        Some(s) if s.chars().any(char::is_control) => {
            Err(bad(url, format!("{key}: control characters in it")))
        }
        other => Ok(other),
    }
}

fn required(url: &str, doc: &Json, key: &str, max: usize) -> Result<String, AuthError> {
    string(url, doc, key, max)?.ok_or_else(|| bad(url, format!("no {key}")))
}

/// A whole number of seconds (a fraction dropped; negative or not a number: none).
fn number(doc: &Json, key: &str) -> Option<u64> {
    doc.get(key)
        .and_then(Json::as_f64)
        .filter(|f| f.is_finite() && *f >= 0.0)
        .map(|f| f as u64)
}

/// An OAuth2 error response (`error`, `error_description`) as an error, if it is one.
fn oauth_error(endpoint: &'static str, doc: &Json) -> Option<AuthError> {
    let error = doc.get("error")?.as_str()?;
    Some(AuthError::OAuth {
        endpoint,
        error: clip(error),
        description: doc
            .get("error_description")
            .and_then(Json::as_str)
            .map(|d| printable(d, 300)),
    })
}

/// Start a login: discovery, then the device authorization request.
pub fn start(
    client: &mut http::Client,
    issuer: &str,
    client_id: &str,
    scope: &str,
) -> Result<Pending, AuthError> {
    let d = Discovery::fetch(client, issuer)?;
    let url = d.device_authorization_endpoint.ok_or_else(|| {
        bad(
            issuer,
            "the issuer offers no device authorization endpoint (device flow not enabled?)",
        )
    })?;
    let token_endpoint = d
        .token_endpoint
        .ok_or_else(|| bad(issuer, "the issuer names no token endpoint"))?;
    let r = client.post_form(
        &url,
        &http::form(&[("client_id", client_id), ("scope", scope)]),
    )?;
    let doc = json_object(&url, &r)?;
    if let Some(e) = oauth_error("device authorization", &doc) {
        return Err(e);
    }
    if r.status != 200 {
        return Err(bad(&url, format!("HTTP {}", r.status)));
    }
    Ok(Pending {
        verification_uri: match shown(&url, &doc, "verification_uri", 2048)? {
            Some(u) => u,
            // Some servers still use the draft's name.
            None => shown(&url, &doc, "verification_url", 2048)?
                .ok_or_else(|| bad(&url, "no verification_uri"))?,
        },
        verification_uri_complete: shown(&url, &doc, "verification_uri_complete", 2048)?,
        user_code: shown(&url, &doc, "user_code", 64)?.ok_or_else(|| bad(&url, "no user_code"))?,
        device_code: required(&url, &doc, "device_code", MAX_SECRET)?,
        interval: number(&doc, "interval").unwrap_or(5).clamp(1, MAX_INTERVAL),
        expires_in: number(&doc, "expires_in").unwrap_or(600).min(3600),
        token_endpoint,
        issuer: issuer.to_owned(),
        client_id: client_id.to_owned(),
    })
}

/// A successful token response as a login (keeping `previous_refresh` when the server does
/// not send a new refresh token).
fn login_from(
    url: &str,
    endpoint: &'static str,
    r: &http::Response,
    issuer: &str,
    client_id: &str,
    previous_refresh: Option<String>,
    now: u64,
) -> Result<Login, AuthError> {
    let doc = json_object(url, r)?;
    if let Some(e) = oauth_error(endpoint, &doc) {
        return Err(e);
    }
    if r.status != 200 {
        return Err(bad(url, format!("HTTP {}", r.status)));
    }
    let kind = doc.get("token_type").and_then(Json::as_str).unwrap_or("");
    if !kind.eq_ignore_ascii_case("bearer") {
        return Err(bad(url, format!("token_type {:?}, not Bearer", clip(kind))));
    }
    let access_token = required(url, &doc, "access_token", MAX_JWT)?;
    if !access_token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(url, "the access token is not printable ASCII"));
    }
    Ok(Login {
        issuer: issuer.to_owned(),
        client_id: client_id.to_owned(),
        token_endpoint: url.to_owned(),
        access_token,
        // Without expires_in, assume a short life: it is refreshed the sooner.
        expires_at: now.saturating_add(number(&doc, "expires_in").unwrap_or(60)),
        refresh_token: string(url, &doc, "refresh_token", MAX_SECRET)?.or(previous_refresh),
    })
}

impl Pending {
    /// Poll the token endpoint until the user approves (the login), refuses, or the codes
    /// expire (errors). `sleep` waits (a test may pass a shorter one); `now` is Unix seconds.
    pub fn poll(
        &self,
        client: &mut http::Client,
        mut sleep: impl FnMut(Duration),
        now: impl Fn() -> u64,
    ) -> Result<Login, AuthError> {
        let form = http::form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", &self.device_code),
            ("client_id", &self.client_id),
        ]);
        let give_up = now().saturating_add(self.expires_in);
        let mut interval = self.interval;
        loop {
            sleep(Duration::from_secs(interval));
            if now() >= give_up {
                return Err(AuthError::OAuth {
                    endpoint: "token",
                    error: "expired_token".into(),
                    description: Some("the code was not approved in time".into()),
                });
            }
            let r = client.post_form(&self.token_endpoint, &form)?;
            match login_from(
                &self.token_endpoint,
                "token",
                &r,
                &self.issuer,
                &self.client_id,
                None,
                now(),
            ) {
                Err(AuthError::OAuth { error, .. }) if error == "authorization_pending" => {}
                Err(AuthError::OAuth { error, .. }) if error == "slow_down" => {
                    interval = (interval + 5).min(MAX_INTERVAL);
                }
                other => return other,
            }
        }
    }
}

impl Login {
    /// A new access token with the refresh token (which the server may replace).
    pub fn refresh(&self, client: &mut http::Client, now: u64) -> Result<Login, AuthError> {
        let Some(refresh) = &self.refresh_token else {
            return Err(AuthError::OAuth {
                endpoint: "refresh",
                error: "no_refresh_token".into(),
                description: Some(format!(
                    "the access token expired and the issuer gave no refresh token: run `arsync login {}`",
                    self.issuer
                )),
            });
        };
        http::Url::parse(&self.token_endpoint)?;
        let r = client.post_form(
            &self.token_endpoint,
            &http::form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", &self.client_id),
            ]),
        )?;
        login_from(
            &self.token_endpoint,
            "refresh",
            &r,
            &self.issuer,
            &self.client_id,
            Some(refresh.clone()),
            now,
        )
    }
}

/// The stored logins: a directory of one file per issuer.
#[derive(Debug, Clone)]
pub struct LoginStore {
    dir: PathBuf,
}

impl LoginStore {
    /// The store in `dir`.
    pub fn new(dir: &Path) -> LoginStore {
        LoginStore {
            dir: dir.to_path_buf(),
        }
    }

    /// `CONFIG/arsync/oidc` (`$XDG_CONFIG_HOME`, else `~/.config`).
    pub fn default_dir() -> Option<PathBuf> {
        crate::config_dir().map(|d| d.join("oidc"))
    }

    /// The file of `issuer`'s login: a digest of the issuer URL, so any URL makes a safe name.
    pub fn path(&self, issuer: &str) -> PathBuf {
        let h = Sha256::digest(issuer.as_bytes());
        let name: String = h[..12].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.toml"))
    }

    /// `issuer`'s login, or [`AuthError::NotLoggedIn`].
    pub fn load(&self, issuer: &str) -> Result<Login, AuthError> {
        let path = self.path(issuer);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AuthError::NotLoggedIn {
                    issuer: issuer.to_owned(),
                    path,
                })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let login: Login = toml::from_str(&text).map_err(|e| AuthError::Unparsable {
            path: path.clone(),
            format: "a TOML login file",
            source: e.into(),
        })?;
        if login.issuer != issuer {
            return Err(AuthError::BadFile {
                path,
                message: format!("holds a login for {}, not {issuer}", login.issuer),
            });
        }
        Ok(login)
    }

    /// Store `login` (mode 0600, in a 0700 directory).
    pub fn save(&self, login: &Login) -> Result<PathBuf, AuthError> {
        let path = self.path(&login.issuer);
        let text = toml::to_string(login).map_err(|e| AuthError::Encode {
            path: path.clone(),
            source: e.into(),
        })?;
        create_private_dir(&self.dir)?;
        write_atomically(&path, text.as_bytes(), 0o600)?;
        Ok(path)
    }

    /// The access token of `issuer`'s login, refreshed first (and stored) when less than
    /// [`REFRESH_MARGIN`] seconds of it are left.
    pub fn access_token(
        &self,
        client: &mut http::Client,
        issuer: &str,
        now: u64,
    ) -> Result<String, AuthError> {
        let login = self.load(issuer)?;
        if login.expires_at > now.saturating_add(REFRESH_MARGIN) {
            return Ok(login.access_token);
        }
        let fresh = login.refresh(client, now)?;
        self.save(&fresh)?;
        Ok(fresh.access_token)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Mutex};

    /// An issuer on loopback answering each request with the next of `answers` (status, JSON
    /// in which `{BASE}` stands for its own URL), recording the requests' bodies; its token
    /// endpoint's URL.
    fn endpoint(answers: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let url = format!("{base}/token");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for (status, body) in answers {
                let (mut s, _) = l.accept().unwrap();
                let mut req = [0u8; 8192];
                let n = s.read(&mut req).unwrap();
                let req = String::from_utf8_lossy(&req[..n]).into_owned();
                s2.lock()
                    .unwrap()
                    .push(req.split("\r\n\r\n").nth(1).unwrap_or("").to_owned());
                let body = body.replace("{BASE}", &base);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, seen)
    }

    fn pending(url: &str) -> Pending {
        Pending {
            verification_uri: "http://127.0.0.1/device".into(),
            verification_uri_complete: None,
            user_code: "ABCD-EFGH".into(),
            device_code: "dc".into(),
            interval: 5,
            expires_in: 600,
            token_endpoint: url.into(),
            issuer: "http://127.0.0.1".into(),
            client_id: "cli".into(),
        }
    }

    #[test]
    fn starting_a_login_checks_what_the_issuer_says() {
        let disco = r#"{"issuer":"{BASE}","jwks_uri":"{BASE}/jwks","token_endpoint":"{BASE}/token","device_authorization_endpoint":"{BASE}/device/auth"}"#;
        let (url, seen) = endpoint(vec![
            (200, disco),
            (
                200,
                r#"{"device_code":"d","user_code":"WXYZ","verification_uri":"{BASE}/device","interval":1000}"#,
            ),
            (200, disco),
            // An escape sequence for the user's terminal in the code.
            (
                200,
                r#"{"device_code":"d","user_code":"\u001b[2J","verification_uri":"{BASE}/device"}"#,
            ),
            (200, disco),
            (400, r#"{"error":"invalid_client"}"#),
            (200, r#"{"issuer":"{BASE}","jwks_uri":"{BASE}/jwks"}"#),
            (
                200,
                r#"{"issuer":"https://elsewhere","jwks_uri":"{BASE}/jwks"}"#,
            ),
        ]);
        let issuer = url.trim_end_matches("/token");
        let mut c = http::Client::new(None);
        let p = start(&mut c, issuer, "cli", DEFAULT_SCOPE).unwrap();
        assert_eq!(
            (p.user_code.as_str(), p.interval, p.expires_in),
            ("WXYZ", 60, 600)
        );
        assert_eq!(p.verification_uri, format!("{issuer}/device"));
        assert!(seen.lock().unwrap()[1].contains("scope=openid%20offline_access%20arsync%3Awrite"));
        let e = start(&mut c, issuer, "cli", DEFAULT_SCOPE).unwrap_err();
        assert!(
            e.to_string().contains("user_code: control characters"),
            "{e}"
        );
        let e = start(&mut c, issuer, "cli", DEFAULT_SCOPE).unwrap_err();
        assert!(
            matches!(&e, AuthError::OAuth { error, .. } if error == "invalid_client"),
            "{e}"
        );
        let e = start(&mut c, issuer, "cli", DEFAULT_SCOPE).unwrap_err();
        assert!(
            e.to_string().contains("no device authorization endpoint"),
            "{e}"
        );
        let e = start(&mut c, issuer, "cli", DEFAULT_SCOPE).unwrap_err();
        assert!(e.to_string().contains("names issuer"), "{e}");
    }

    #[test]
    fn polling_honours_pending_and_slow_down() {
        let (url, seen) = endpoint(vec![
            (400, r#"{"error":"authorization_pending"}"#),
            (400, r#"{"error":"slow_down"}"#),
            (400, r#"{"error":"authorization_pending"}"#),
            (
                200,
                r#"{"access_token":"a.b.c","token_type":"Bearer","expires_in":60,"refresh_token":"r1"}"#,
            ),
        ]);
        let mut waits = Vec::new();
        let login = pending(&url)
            .poll(
                &mut http::Client::new(None),
                |d| waits.push(d.as_secs()),
                || 1000,
            )
            .unwrap();
        assert_eq!(
            waits,
            [5, 5, 10, 10],
            "slow_down adds five seconds for good"
        );
        assert_eq!(login.access_token, "a.b.c");
        assert_eq!(
            (login.expires_at, login.refresh_token.as_deref()),
            (1060, Some("r1"))
        );
        let body = &seen.lock().unwrap()[0];
        assert!(body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"));
        assert!(body.contains("device_code=dc") && body.contains("client_id=cli"));
    }

    #[test]
    fn a_refusal_or_a_broken_answer_ends_the_login() {
        let (url, _) = endpoint(vec![
            (400, r#"{"error":"access_denied","error_description":"no"}"#),
            (200, r#"{"access_token":"x","token_type":"mac"}"#),
            (200, r#"[1]"#),
        ]);
        let mut c = http::Client::new(None);
        let p = pending(&url);
        let e = p.poll(&mut c, |_| {}, || 0).unwrap_err();
        assert!(
            matches!(&e, AuthError::OAuth { error, .. } if error == "access_denied"),
            "{e}"
        );
        assert!(matches!(
            p.poll(&mut c, |_| {}, || 0),
            Err(AuthError::BadDocument { .. })
        ));
        assert!(matches!(
            p.poll(&mut c, |_| {}, || 0),
            Err(AuthError::BadDocument { .. })
        ));
        // Codes that expire end the polling without a request.
        let mut p = pending(&url);
        p.expires_in = 0;
        let e = p.poll(&mut c, |_| {}, || 7).unwrap_err();
        assert!(
            matches!(&e, AuthError::OAuth { error, .. } if error == "expired_token"),
            "{e}"
        );
    }

    #[test]
    fn stored_logins_are_private_and_refresh_when_near_expiry() {
        let t = tempfile::tempdir().unwrap();
        let store = LoginStore::new(&t.path().join("oidc"));
        let (url, seen) = endpoint(vec![(
            200,
            r#"{"access_token":"new","token_type":"bearer","expires_in":300}"#,
        )]);
        let login = Login {
            issuer: "http://127.0.0.1:1".into(),
            client_id: "cli".into(),
            token_endpoint: url,
            access_token: "old".into(),
            expires_at: 1000,
            refresh_token: Some("r1".into()),
        };
        let path = store.save(&login).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&path), mode(&t.path().join("oidc"))), (0o600, 0o700));
        let mut c = http::Client::new(None);
        // Plenty left: no request.
        assert_eq!(
            store.access_token(&mut c, &login.issuer, 900).unwrap(),
            "old"
        );
        // Within the margin: refreshed, and the refresh token kept as none came back.
        assert_eq!(
            store.access_token(&mut c, &login.issuer, 980).unwrap(),
            "new"
        );
        assert!(seen.lock().unwrap()[0].contains("refresh_token=r1"));
        let stored = store.load(&login.issuer).unwrap();
        assert_eq!(
            (stored.expires_at, stored.refresh_token.as_deref()),
            (1280, Some("r1"))
        );
        assert!(matches!(
            store.load("http://127.0.0.1:2"),
            Err(AuthError::NotLoggedIn { .. })
        ));
    }
}
