//! Counters for `GET /metrics` (Prometheus text format).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use transport::ErrorCode;

/// Most rooms listed by `signaling_room_clients` (the largest ones).
pub(crate) const MAX_ROOMS_LISTED: usize = 1000;

/// The server's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) clients: AtomicI64,
    pub(crate) joins: AtomicU64,
    pub(crate) relayed: AtomicU64,
    pub(crate) refused_connections: AtomicU64,
    rejected: [AtomicU64; 32],
}

fn index(code: ErrorCode) -> usize {
    ErrorCode::ALL
        .iter()
        .position(|c| *c == code)
        .unwrap_or(ErrorCode::ALL.len())
        .min(31)
}

impl Metrics {
    pub(crate) fn reject(&self, code: ErrorCode) {
        self.rejected[index(code)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(
        &self,
        joined: usize,
        rooms: usize,
        room_sizes: &[(std::sync::Arc<str>, usize)],
    ) -> String {
        let mut out = String::with_capacity(2048 + room_sizes.len() * 48);
        let mut gauge = |name: &str, help: &str, kind: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        gauge(
            "signaling_clients",
            "Connected WebSocket clients.",
            "gauge",
            self.clients.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "signaling_joined_clients",
            "Clients holding a peer id.",
            "gauge",
            joined.to_string(),
        );
        gauge(
            "signaling_joins_total",
            "Successful joins.",
            "counter",
            self.joins.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "signaling_relayed_messages_total",
            "Messages relayed from one peer to another.",
            "counter",
            self.relayed.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "signaling_refused_connections_total",
            "Connections refused because the server was full.",
            "counter",
            self.refused_connections.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "signaling_rooms",
            "Rooms with at least one member.",
            "gauge",
            rooms.to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP signaling_rejected_inputs_total Inputs answered with an error, by code.\n\
             # TYPE signaling_rejected_inputs_total counter"
        );
        for code in ErrorCode::ALL {
            let _ = writeln!(
                out,
                "signaling_rejected_inputs_total{{reason=\"{}\"}} {}",
                code.as_str(),
                self.rejected[index(*code)].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP signaling_room_clients Members per room (the {MAX_ROOMS_LISTED} largest rooms).\n\
             # TYPE signaling_room_clients gauge"
        );
        // Room names are `[A-Za-z0-9._-]`, so they need no escaping in a label.
        for (room, size) in room_sizes {
            let _ = writeln!(out, "signaling_room_clients{{room=\"{room}\"}} {size}");
        }
        out
    }
}
