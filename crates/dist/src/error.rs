//! The one error type of `facerec-dist`.

use std::time::Duration;

/// What can go wrong when joining a group or running a collective. Each variant says which
/// rank saw it and what to look at.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A launcher variable is malformed or inconsistent.
    #[error("distributed environment: {var}={value:?}: {msg}")]
    Env { var: &'static str, value: String, msg: String },
    /// The TCPStore rendezvous or the process group's connection set-up failed.
    #[error(
        "rank {rank} of {world}: rendezvous at {addr}:{port} ({backend}) failed within {timeout:?}: {msg}{hint}",
        hint = hint(msg)
    )]
    Rendezvous { rank: usize, world: usize, addr: String, port: u16, backend: &'static str, timeout: Duration, msg: String },
    /// A collective failed or timed out (a peer died, hung, or called a different collective).
    #[error("rank {rank} of {world}: {op} failed: {msg}{hint}", hint = hint(msg))]
    Collective { rank: usize, world: usize, op: &'static str, msg: String },
    /// A tensor the backend cannot take (device, layout).
    #[error("rank {rank}: {op}: {msg}")]
    Tensor { rank: usize, op: &'static str, msg: String },
    /// NCCL asked for, but this build has no ProcessGroupNCCL.
    #[error(
        "NCCL is not compiled into facerec-dist (its headers were missing at build time: run \
         scripts/setup.sh and rebuild, or train on the CPU with Gloo)"
    )]
    NcclUnavailable,
}

/// `Result` with [`DistError`].
pub type Result<T, E = DistError> = std::result::Result<T, E>;

/// A plain-words reading of the messages c10d and Gloo give when a peer is gone or stuck.
fn hint(msg: &str) -> &'static str {
    let m = msg.to_ascii_lowercase();
    if m.contains("timed out") || m.contains("timeout") {
        " (another rank did not take part in time: it may have died, hung, or be running a \
         different step; see its output)"
    } else if m.contains("connection closed")
        || m.contains("connection reset")
        || m.contains("broken pipe")
        || m.contains("connection refused")
        || m.contains("read error")
        || m.contains("write error")
    {
        " (another rank has exited or lost its connection; see its output)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_which_rank_and_why() {
        let e = DistError::Collective {
            rank: 0,
            world: 2,
            op: "all_reduce",
            msg: "[gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:1234".into(),
        };
        let s = e.to_string();
        assert!(s.starts_with("rank 0 of 2: all_reduce failed: "), "{s}");
        assert!(s.contains("another rank has exited"), "{s}");
        let e = DistError::Collective { rank: 1, world: 2, op: "barrier", msg: "Operation timed out!".into() };
        assert!(e.to_string().contains("did not take part in time"));
    }
}
