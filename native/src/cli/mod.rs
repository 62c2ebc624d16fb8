//! The subcommands that do not run a peer: `pinfold ctl` ([`ctl`]), a client of a peer's
//! REST API; `pinfold follow` ([`follow`]), which runs a follower from a cluster's
//! template; and `pinfold service state` ([`state`]), on a stopped peer's pinset.

pub mod ctl;
pub mod follow;
pub mod state;
