//! doppel's own HTTP headers, shared by the handlers, the error mapping and routing.

/// Set on a request another node forwarded here: it is never forwarded again.
pub const FORWARDED: &str = "x-doppel-forwarded";
/// Marks a 503 whose request was not evaluated (the node no longer leads the group).
pub const NOT_LEADER_HEADER: &str = "x-doppel-not-leader";
/// `local` skips the read barrier of a GET (reads this node's applied state as is).
pub const CONSISTENCY: &str = "x-doppel-consistency";
/// Set with `404 DeviceNotOnline`, so routing can ask other nodes for the device.
pub const DEVICE_OFFLINE_HEADER: &str = "x-doppel-device-offline";
