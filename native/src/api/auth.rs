//! The APIs' authentication, as ipfs-cluster's: HTTP basic auth against the API's
//! `basic_auth_credentials`, and bearer tokens from `POST /token`, which are JWTs (HS256)
//! whose issuer (`iss`) is the user and whose key is that user's password, byte for byte
//! the tokens Go ipfs-cluster v1.1.6 issues, so a token from either works at both. Tokens
//! of earlier pinfold versions, which named the user as the audience (`aud`), still
//! work. Without credentials configured an API is open (they listen on loopback by
//! default).
//!
//! A refused request gets 401 with `WWW-Authenticate` and the API's error body, and never a
//! hint of the data.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

/// ipfs-cluster's realm.
const REALM: &str = "Basic realm=\"Restricted IPFS Cluster API\"";

/// How an API writes an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorShape {
    /// ipfs-cluster's REST API: `{"code": N, "message": "..."}`.
    #[default]
    Cluster,
    /// The Pinning Services API: `{"error": {"reason": "..."}}`.
    PinningService,
}

impl ErrorShape {
    /// The error response of `status` saying `message`.
    pub fn response(self, status: StatusCode, message: &str) -> Response {
        let body = match self {
            ErrorShape::Cluster => json!({"code": status.as_u16(), "message": message}),
            ErrorShape::PinningService => json!({"error": {"reason": message}}),
        };
        (status, Json(body)).into_response()
    }
}

/// Users and their passwords (empty means no authentication), and how refusals are written.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    users: Arc<BTreeMap<String, String>>,
    errors: ErrorShape,
}

impl Credentials {
    pub fn new(users: BTreeMap<String, String>, errors: ErrorShape) -> Self {
        Self {
            users: Arc::new(users),
            errors,
        }
    }

    pub fn is_open(&self) -> bool {
        self.users.is_empty()
    }

    /// The user whose basic credentials are in `headers`, if they match.
    fn basic_user(&self, headers: &HeaderMap) -> Option<String> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let encoded = value.strip_prefix("Basic ")?;
        let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        let expected = self.users.get(user)?;
        constant_time_eq(expected.as_bytes(), password.as_bytes()).then(|| user.to_owned())
    }

    /// The user of the bearer token in `headers`, when it is signed for a known user.
    fn bearer_user(&self, headers: &HeaderMap, now_secs: i64) -> Option<String> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let token = value
            .get(..7)
            .filter(|prefix| prefix.eq_ignore_ascii_case("Bearer "))
            .map(|_| &value[7..])?;
        verify_token(token.trim(), |user| self.users.get(user).cloned(), now_secs)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn mac(key: &str) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length")
}

/// A JWT (HS256) whose issuer is `user`, signed with `password`: what Go's
/// `generateSignedTokenString` makes, which sets no other claim.
pub fn issue_token(user: &str, password: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(json!({ "iss": user }).to_string());
    let signing_input = format!("{header}.{claims}");
    let mut signer = mac(password);
    signer.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(signer.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// The user of `token` when it is an HS256 JWT naming a user `password_of` knows (as its
/// issuer, else as its first audience), signed with that user's password, and neither
/// expired nor issued after `now_secs`.
pub fn verify_token(
    token: &str,
    password_of: impl Fn(&str) -> Option<String>,
    now_secs: i64,
) -> Option<String> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let decode = |part: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let (header_json, claims_json) = (decode(header)?, decode(claims)?);
    if header_json["alg"] != "HS256" {
        return None;
    }
    let user = match (&claims_json["iss"], &claims_json["aud"]) {
        (serde_json::Value::String(user), _) | (_, serde_json::Value::String(user)) => user.clone(),
        (_, serde_json::Value::Array(users)) => users.first()?.as_str()?.to_owned(),
        _ => return None,
    };
    let expired = claims_json["exp"]
        .as_i64()
        .is_some_and(|exp| exp <= now_secs);
    let early = claims_json["iat"]
        .as_i64()
        .is_some_and(|iat| iat > now_secs)
        || claims_json["nbf"]
            .as_i64()
            .is_some_and(|nbf| nbf > now_secs);
    if expired || early {
        return None;
    }
    let password = password_of(&user)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let mut verifier = mac(&password);
    verifier.update(format!("{header}.{claims}").as_bytes());
    verifier.verify_slice(&signature).ok().map(|()| user)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn unauthorized(errors: ErrorShape) -> Response {
    let mut response = errors.response(StatusCode::UNAUTHORIZED, "Unauthorized");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(REALM),
    );
    response
}

/// Lets a request through when the API is open, or it carries valid basic credentials
/// or a valid bearer token.
pub async fn require(
    State(credentials): State<Credentials>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    if credentials.is_open()
        || credentials.basic_user(headers).is_some()
        || credentials.bearer_user(headers, now_secs()).is_some()
    {
        next.run(request).await
    } else {
        unauthorized(credentials.errors)
    }
}

/// `POST /token`: a bearer token for the user of the request, named by its basic
/// credentials or by a valid bearer token, as in Go.
pub async fn token(State(credentials): State<Credentials>, headers: HeaderMap) -> Response {
    if credentials.is_open() {
        return credentials.errors.response(
            StatusCode::BAD_REQUEST,
            "tokens need basic authentication: set the API's basic_auth_credentials",
        );
    }
    let user = credentials
        .basic_user(&headers)
        .or_else(|| credentials.bearer_user(&headers, now_secs()));
    match user {
        Some(user) => {
            let password = credentials.users.get(&user).cloned().unwrap_or_default();
            Json(json!({ "token": issue_token(&user, &password) })).into_response()
        }
        None => unauthorized(credentials.errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> impl Fn(&str) -> Option<String> {
        |user| (user == "alice").then(|| "secret".to_owned())
    }

    fn signed(claims: &str, key: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(claims);
        let mut signer = mac(key);
        signer.update(format!("{header}.{claims}").as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(signer.finalize().into_bytes());
        format!("{header}.{claims}.{signature}")
    }

    #[test]
    fn tokens_verify_for_their_user_and_password_only() {
        let alice = Some("alice".to_owned());
        let token = issue_token("alice", "secret");
        assert_eq!(verify_token(&token, users(), 2_000), alice);
        assert_eq!(
            verify_token(&issue_token("alice", "wrong"), users(), 2_000),
            None
        );
        assert_eq!(
            verify_token(&issue_token("bob", "secret"), users(), 2_000),
            None
        );
        let mut tampered = token.clone();
        tampered.insert(tampered.len() - 3, 'A');
        assert_eq!(verify_token(&tampered, users(), 2_000), None);
        assert_eq!(verify_token("a.b", users(), 2_000), None);
        assert_eq!(verify_token("", users(), 2_000), None);
    }

    /// Tokens of earlier pinfold versions named the user as the audience.
    #[test]
    fn audience_tokens_still_verify() {
        let token = signed(r#"{"aud":["alice"],"iat":1000}"#, "secret");
        assert_eq!(
            verify_token(&token, users(), 2_000),
            Some("alice".to_owned())
        );
    }

    #[test]
    fn expired_early_and_unsigned_tokens_are_refused() {
        let token = signed(r#"{"iss":"alice","exp":1500}"#, "secret");
        assert!(verify_token(&token, users(), 1_000).is_some());
        assert_eq!(verify_token(&token, users(), 1_500), None, "expired");
        let early = signed(r#"{"iss":"alice","iat":5000}"#, "secret");
        assert_eq!(verify_token(&early, users(), 1_000), None, "issued later");
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"iss":"alice"}"#);
        assert_eq!(
            verify_token(&format!("{none}.{claims}."), users(), 1_000),
            None
        );
    }

    /// Go's `generateSignedTokenString("alice", "secret")` (golang-jwt v4, claims
    /// `{"iss":"alice"}`); worked out with Python's `hmac`, `hashlib.sha256` and
    /// `base64.urlsafe_b64encode` (padding stripped). The interop tier checks it against
    /// the token a running Go peer issues.
    #[test]
    fn golden_token() {
        assert_eq!(issue_token("alice", "secret"), GOLDEN_TOKEN);
    }

    const GOLDEN_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhbGljZSJ9.cyNU8xTEDNzXijU9Vl5LF5aZ1Y2q91Q_q_VmSddkqII";
}
