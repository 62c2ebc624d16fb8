//! The `code` of every error the follower throws or emits. This enum is the one table of
//! codes: wasm-bindgen writes it into the TypeScript declarations as the `ErrorCode` union,
//! the npm package maps each code to its error class (a `Record<ErrorCode, …>`, so a code
//! added here fails its build until it has one), the dashboard words each, and the npm
//! package's tests check that its README lists exactly these.

use wasm_bindgen::prelude::*;

/// What kind of failure an error is.
#[wasm_bindgen]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The bootstrap peer refused the private-network handshake, or a connection failed
    /// the secret proof: the secret differs.
    WrongSecret = "WRONG_SECRET",
    /// No bootstrap address could be dialed, or none answered in time.
    Unreachable = "UNREACHABLE",
    /// An option is missing or malformed; the message names it.
    InvalidOptions = "INVALID_OPTIONS",
    /// A CID argument is not a CID.
    InvalidCid = "INVALID_CID",
    /// A call after `close()`.
    Closed = "CLOSED",
    /// IndexedDB could not be opened, read or written.
    Storage = "STORAGE",
    /// Pinset heads from a peer that is not trusted were ignored (an `error` event).
    UntrustedData = "UNTRUSTED_DATA",
    /// A peer's snapshot could not be loaded; the follower walks the DAG instead (an
    /// `error` event).
    Snapshot = "SNAPSHOT",
    /// No peer reported a status.
    NoStatus = "NO_STATUS",
}

/// Every code, in the table's order (add a new one here too).
const ALL: [ErrorCode; 9] = [
    ErrorCode::WrongSecret,
    ErrorCode::Unreachable,
    ErrorCode::InvalidOptions,
    ErrorCode::InvalidCid,
    ErrorCode::Closed,
    ErrorCode::Storage,
    ErrorCode::UntrustedData,
    ErrorCode::Snapshot,
    ErrorCode::NoStatus,
];

/// The error code at `index` of the table, or `undefined` past its end: how JavaScript
/// lists every code (the npm package's `errorCodes()`).
#[wasm_bindgen(js_name = errorCodeAt)]
pub fn error_code_at(index: usize) -> Option<ErrorCode> {
    ALL.get(index).copied()
}

impl ErrorCode {
    /// The code's text, as JavaScript sees it.
    pub fn as_str(self) -> &'static str {
        self.to_str()
    }

    /// A JavaScript `Error` with this code and `message`.
    pub fn error(self, message: &str) -> JsValue {
        let error = js_sys::Error::new(message);
        let _ = js_sys::Reflect::set(&error, &"code".into(), &self.into());
        error.into()
    }
}
