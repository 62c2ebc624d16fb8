//! The APIs' authentication, as ipfs-cluster's: HTTP basic auth against the API's
//! `basic_auth_credentials`, and bearer tokens from `POST /token`, which are JWTs (HS256)
//! whose audience is the user and whose key is that user's password. Without credentials
//! configured an API is open (they listen on loopback by default).
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

    /// Whether `headers` carry a bearer token signed for a known user.
    fn bearer_valid(&self, headers: &HeaderMap, now_secs: i64) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        verify_token(token.trim(), |user| self.users.get(user).cloned(), now_secs)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn mac(key: &str) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length")
}

/// A JWT (HS256) for `user`, issued at `now_secs`, signed with `password`.
pub fn issue_token(user: &str, password: &str, now_secs: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(json!({"aud": [user], "iat": now_secs}).to_string());
    let signing_input = format!("{header}.{claims}");
    let mut signer = mac(password);
    signer.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(signer.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Whether `token` is an HS256 JWT whose audience is a user `password_of` knows, signed
/// with that user's password, and not expired.
pub fn verify_token(
    token: &str,
    password_of: impl Fn(&str) -> Option<String>,
    now_secs: i64,
) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let decode = |part: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let (Some(header_json), Some(claims_json)) = (decode(header), decode(claims)) else {
        return false;
    };
    if header_json["alg"] != "HS256" {
        return false;
    }
    let user = match &claims_json["aud"] {
        serde_json::Value::String(user) => user.clone(),
        serde_json::Value::Array(users) => match users.first().and_then(|u| u.as_str()) {
            Some(user) => user.to_owned(),
            None => return false,
        },
        _ => return false,
    };
    if claims_json["exp"]
        .as_i64()
        .is_some_and(|exp| exp <= now_secs)
    {
        return false;
    }
    let (Some(password), Ok(signature)) = (password_of(&user), URL_SAFE_NO_PAD.decode(signature))
    else {
        return false;
    };
    let mut verifier = mac(&password);
    verifier.update(format!("{header}.{claims}").as_bytes());
    verifier.verify_slice(&signature).is_ok()
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
        || credentials.bearer_valid(headers, now_secs())
    {
        next.run(request).await
    } else {
        unauthorized(credentials.errors)
    }
}

/// `POST /token`: a bearer token for the basic-auth user of the request.
pub async fn token(State(credentials): State<Credentials>, headers: HeaderMap) -> Response {
    if credentials.is_open() {
        return credentials.errors.response(
            StatusCode::BAD_REQUEST,
            "tokens need basic authentication: set the API's basic_auth_credentials",
        );
    }
    match credentials.basic_user(&headers) {
        Some(user) => {
            let password = credentials.users.get(&user).cloned().unwrap_or_default();
            Json(json!({"token": issue_token(&user, &password, now_secs())})).into_response()
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

    #[test]
    fn tokens_verify_for_their_user_and_password_only() {
        let token = issue_token("alice", "secret", 1_000);
        assert!(verify_token(&token, users(), 2_000));
        assert!(!verify_token(
            &issue_token("alice", "wrong", 1_000),
            users(),
            2_000
        ));
        assert!(!verify_token(
            &issue_token("bob", "secret", 1_000),
            users(),
            2_000
        ));
        let mut tampered = token.clone();
        tampered.insert(tampered.len() - 3, 'A');
        assert!(!verify_token(&tampered, users(), 2_000));
        assert!(!verify_token("a.b", users(), 2_000));
        assert!(!verify_token("", users(), 2_000));
    }

    #[test]
    fn expired_and_unsigned_tokens_are_refused() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"aud":"alice","exp":1500}"#);
        let mut signer = mac("secret");
        signer.update(format!("{header}.{claims}").as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(signer.finalize().into_bytes());
        let token = format!("{header}.{claims}.{signature}");
        assert!(verify_token(&token, users(), 1_000));
        assert!(!verify_token(&token, users(), 1_500), "expired");
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert!(!verify_token(&format!("{none}.{claims}."), users(), 1_000));
    }

    /// The JWT's layout is fixed, so that tokens stay valid across versions.
    #[test]
    fn golden_token() {
        assert_eq!(issue_token("alice", "secret", 1_700_000_000), GOLDEN_TOKEN);
    }

    /// Worked out with Python's `hmac`, `hashlib.sha256` and `base64.urlsafe_b64encode`
    /// (padding stripped) over the same header and claims.
    const GOLDEN_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOlsiYWxpY2UiXSwiaWF0IjoxNzAwMDAwMDAwfQ.9twITUgXB75IJgRQAqSUJdbuOZinFfzbdQhNVk2xIZM";
}
