//! go-libp2p-gorpc v0.6.0, the RPC Go ipfs-cluster peers call each other with, on the
//! protocol [`PROTOCOL`]: one libp2p stream per call, msgpack values back to back with no
//! length prefix or delimiter.
//!
//! - A unary call: the caller writes a [`ServiceId`] and the argument, and keeps its side
//!   open (Go cancels the call when the caller half-closes); the callee answers a
//!   [`ResponseHeader`] and the reply value, then closes.
//! - A streaming call: the caller writes the [`ServiceId`], then each argument, then
//!   half-closes; the callee answers a header and a value per reply, then closes. An error
//!   is a header with [`ResponseHeader::error`] set and a nil value.
//!
//! Which methods stream ([`is_streaming`]) and who may call them ([`access`]) are fixed by
//! Go's method signatures and `rpc_policy.go`. [`FrameReader`] cuts values out of the
//! bytes as they arrive, within [`Limits::RPC_ARGUMENT`] for what a caller sends and
//! [`Limits::RPC_REPLY`] for what a callee answers. The cluster's types on this wire are in
//! [`api`].

pub mod api;

use super::msgpack::{self, complete_len, Limits, MsgpackError, StructWriter, Value};

/// `version.RPCProtocol` of Go ipfs-cluster v1.1.6: not tied to its release.
pub const PROTOCOL: &str = "/ipfscluster/1.0/rpc";

/// Which method a call is for (Go's `ServiceID`): `Cluster` and `ID`, say.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceId {
    pub name: String,
    pub method: String,
}

impl ServiceId {
    pub fn new(name: &str, method: &str) -> Self {
        Self {
            name: name.to_owned(),
            method: method.to_owned(),
        }
    }

    pub fn to_value(&self) -> Value {
        StructWriter::new()
            .field("Name", Value::str(&self.name))
            .field("Method", Value::str(&self.method))
            .build()
    }

    pub fn from_value(value: &Value) -> Result<Self, GorpcError> {
        let text = |key: &'static str| -> Result<String, GorpcError> {
            match value.get(key) {
                None | Some(Value::Nil) => Ok(String::new()),
                Some(v) => v
                    .as_str()
                    .map(str::to_owned)
                    .ok_or(GorpcError::Field { field: key }),
            }
        };
        if !matches!(value, Value::Map(_)) {
            return Err(GorpcError::Field { field: "ServiceID" });
        }
        Ok(Self {
            name: text("Name")?,
            method: text("Method")?,
        })
    }
}

impl std::fmt::Display for ServiceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.name, self.method)
    }
}

/// Go's `ErrorType`: who failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorType {
    /// The method returned an error.
    #[default]
    NonRpc,
    /// The server could not run the call (no such service or method).
    Server,
    /// The caller failed; never sent by a server.
    Client,
    /// The caller may not call this method.
    Authorization,
}

impl ErrorType {
    fn code(self) -> i64 {
        match self {
            ErrorType::NonRpc => 0,
            ErrorType::Server => 1,
            ErrorType::Client => 2,
            ErrorType::Authorization => 3,
        }
    }

    fn from_code(code: i64) -> Self {
        match code {
            1 => ErrorType::Server,
            2 => ErrorType::Client,
            3 => ErrorType::Authorization,
            _ => ErrorType::NonRpc,
        }
    }
}

/// The header before each reply value (Go's `Response` without its data).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    pub service: Option<ServiceId>,
    /// Empty on success.
    pub error: String,
    pub error_type: ErrorType,
}

impl ResponseHeader {
    pub fn ok(service: &ServiceId) -> Self {
        Self {
            service: Some(service.clone()),
            ..Self::default()
        }
    }

    pub fn failed(service: &ServiceId, error: impl Into<String>, error_type: ErrorType) -> Self {
        Self {
            service: Some(service.clone()),
            error: error.into(),
            error_type,
        }
    }

    /// Go's words for a call the policy refuses.
    pub fn denied(service: &ServiceId) -> Self {
        Self::failed(
            service,
            format!("client does not have permissions to call {service}"),
            ErrorType::Authorization,
        )
    }

    /// Go's words for a method it does not have.
    pub fn unknown(service: &ServiceId) -> Self {
        let error = if is_known_service(&service.name) {
            format!("rpc: can't find method {}", service.method)
        } else {
            format!("rpc: can't find service {service}")
        };
        Self::failed(service, error, ErrorType::Server)
    }

    pub fn to_value(&self) -> Value {
        let service = self
            .service
            .as_ref()
            .map_or(Value::Nil, ServiceId::to_value);
        StructWriter::new()
            .omit_empty("Service", service)
            .omit_empty("Error", Value::str(&self.error))
            .omit_empty("ErrType", Value::Int(self.error_type.code()))
            .build()
    }

    pub fn from_value(value: &Value) -> Result<Self, GorpcError> {
        if !matches!(value, Value::Map(_)) {
            return Err(GorpcError::Field { field: "Response" });
        }
        let service = match value.get("Service") {
            None | Some(Value::Nil) => None,
            Some(service) => Some(ServiceId::from_value(service)?),
        };
        let error = match value.get("Error") {
            None | Some(Value::Nil) => String::new(),
            Some(v) => v
                .as_str()
                .ok_or(GorpcError::Field { field: "Error" })?
                .to_owned(),
        };
        let error_type = match value.get("ErrType") {
            None | Some(Value::Nil) => ErrorType::NonRpc,
            Some(v) => {
                ErrorType::from_code(v.as_i64().ok_or(GorpcError::Field { field: "ErrType" })?)
            }
        };
        Ok(Self {
            service,
            error,
            error_type,
        })
    }

    /// The header followed by `body`, as written on the stream.
    pub fn frame(&self, body: &Value) -> Vec<u8> {
        let mut out = msgpack::to_vec(&self.to_value());
        msgpack::encode(body, &mut out);
        out
    }
}

/// A call's opening: its service id and, for unary calls, the argument.
pub fn request_frame(service: &ServiceId, argument: Option<&Value>) -> Vec<u8> {
    let mut out = msgpack::to_vec(&service.to_value());
    if let Some(argument) = argument {
        msgpack::encode(argument, &mut out);
    }
    out
}

/// Why bytes on an RPC stream are not what gorpc sends.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GorpcError {
    #[error(transparent)]
    Msgpack(#[from] MsgpackError),
    #[error("{field} is not what gorpc sends there")]
    Field { field: &'static str },
}

/// Values cut out of a stream's bytes as they arrive.
#[derive(Debug)]
pub struct FrameReader {
    buffer: Vec<u8>,
    limits: Limits,
}

impl FrameReader {
    pub fn new(limits: Limits) -> Self {
        Self {
            buffer: Vec::new(),
            limits,
        }
    }

    /// Takes bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole value, `None` until its last byte has come.
    pub fn next_value(&mut self) -> Result<Option<Value>, GorpcError> {
        Ok(self.next_frame()?.map(|(value, _)| value))
    }

    /// The next whole value with the bytes it came in.
    pub fn next_frame(&mut self) -> Result<Option<(Value, Vec<u8>)>, GorpcError> {
        let Some(len) = complete_len(&self.buffer, self.limits)? else {
            return Ok(None);
        };
        let (value, used) = msgpack::decode(&self.buffer[..len], self.limits)?;
        debug_assert_eq!(used, len);
        let rest = self.buffer.split_off(len);
        let bytes = std::mem::replace(&mut self.buffer, rest);
        Ok(Some((value, bytes)))
    }

    /// Whether bytes of an unfinished value are waiting.
    pub fn has_partial(&self) -> bool {
        !self.buffer.is_empty()
    }
}

/// Who may call a method from another peer (Go's `RPCEndpointType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any peer of the swarm.
    Open,
    /// Trusted peers only (`consensus.crdt.trusted_peers`).
    Trusted,
    /// No other peer: only the peer itself, in-process.
    Closed,
}

/// Go ipfs-cluster v1.1.6's `DefaultRPCPolicy` for the methods others may call; every
/// other method, known or not, is closed, as Go refuses methods the policy does not list.
pub fn access(service: &ServiceId) -> Access {
    match (service.name.as_str(), service.method.as_str()) {
        ("Cluster", "ID" | "IDStream" | "PeerAdd" | "Version") => Access::Open,
        (
            "Cluster",
            "PeerRemove" | "Peers" | "RecoverAllLocal" | "RecoverLocal" | "RepoGCLocal",
        )
        | ("PinTracker", "Recover" | "Status" | "StatusAll")
        | ("IPFSConnector", "BlockStream" | "RepoStat" | "SwarmPeers")
        | ("Consensus", "AddPeer" | "LogPin" | "LogUnpin" | "RmPeer") => Access::Trusted,
        _ => Access::Closed,
    }
}

/// Whether Go registered the method with channels for argument and reply.
pub fn is_streaming(service: &ServiceId) -> bool {
    matches!(
        (service.name.as_str(), service.method.as_str()),
        (
            "Cluster",
            "IDStream"
                | "Pins"
                | "Peers"
                | "PeersWithFilter"
                | "StatusAll"
                | "StatusAllLocal"
                | "RecoverAll"
                | "RecoverAllLocal"
        ) | ("PinTracker", "StatusAll" | "RecoverAll")
            | ("IPFSConnector", "PinLs" | "BlockStream")
    )
}

/// The services Go ipfs-cluster registers (`RPCServiceID`).
fn is_known_service(name: &str) -> bool {
    matches!(
        name,
        "Cluster" | "PinTracker" | "IPFSConnector" | "Consensus" | "PeerMonitor"
    )
}

#[cfg(test)]
mod tests;
