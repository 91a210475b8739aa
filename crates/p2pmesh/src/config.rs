//! Checks of the node's configuration before the driver starts, so that
//! [`MeshBuilder::build`](crate::MeshBuilder::build) returns an error where the cores would panic.
//!
//! The cores check their configuration with assertions at construction. Until mesh-core's
//! `Config::validate()` exists, this module states the same conditions (mesh-core's, gossip-core's
//! and kademlia-core's `Config::check`) as errors; then [`validate`] becomes one call to it.

use std::time::Duration;

use crate::InvalidSetting;

/// Bytes a mesh-core chunk header takes (`mesh_core::frame::CHUNK_OVERHEAD`, crate-private).
const CHUNK_OVERHEAD: usize = 24;
/// Bytes a Kademlia message takes besides its value or contacts (`kademlia_core`'s
/// `MESSAGE_OVERHEAD`, crate-private).
const KADEMLIA_MESSAGE_OVERHEAD: usize = 96;

fn require(
    ok: bool,
    setting: &'static str,
    requirement: &'static str,
) -> Result<(), InvalidSetting> {
    if ok {
        Ok(())
    } else {
        Err(InvalidSetting::new(setting, requirement))
    }
}

fn nonzero(d: Duration, setting: &'static str) -> Result<(), InvalidSetting> {
    require(!d.is_zero(), setting, "must not be zero")
}

/// Whether the cores accept `config`; the error names the first setting they would refuse.
pub(crate) fn validate(config: &mesh_core::Config) -> Result<(), InvalidSetting> {
    const AT_LEAST_1: &str = "must be at least 1";
    let c = config;
    require(c.max_peers >= 1, "max_peers", AT_LEAST_1)?;
    require(
        c.random_links <= c.max_peers,
        "random_links",
        "must not exceed max_peers",
    )?;
    require(c.close_spacing >= 1, "close_spacing", AT_LEAST_1)?;
    require(c.peer_book_bucket >= 1, "peer_book_bucket", AT_LEAST_1)?;
    require(
        c.max_frame_bytes >= 1024,
        "max_frame_bytes",
        "must be at least 1024",
    )?;
    require(
        c.max_message_bytes >= c.max_frame_bytes,
        "max_message_bytes",
        "must be at least max_frame_bytes",
    )?;
    require(
        c.max_reassembly_bytes >= c.max_message_bytes,
        "max_reassembly_bytes",
        "must hold one message of max_message_bytes",
    )?;
    require(
        c.max_message_bytes / (c.max_frame_bytes - CHUNK_OVERHEAD) < usize::from(u16::MAX),
        "max_message_bytes",
        "needs more than 65535 chunks of max_frame_bytes",
    )?;
    require(c.hop_limit >= 1, "hop_limit", AT_LEAST_1)?;
    require(c.lookup_parallelism >= 1, "lookup_parallelism", AT_LEAST_1)?;
    require(c.lookup_max_rounds >= 1, "lookup_max_rounds", AT_LEAST_1)?;
    require(c.direct_attempts >= 1, "direct_attempts", AT_LEAST_1)?;
    require(c.max_outputs >= 1, "max_outputs", AT_LEAST_1)?;
    nonzero(c.maintenance_interval, "maintenance_interval")?;
    nonzero(c.full_maintenance_interval, "full_maintenance_interval")?;
    nonzero(c.neighbors_refresh_interval, "neighbors_refresh_interval")?;
    nonzero(c.keepalive_interval, "keepalive_interval")?;
    nonzero(c.link_open_timeout, "link_open_timeout")?;
    nonzero(c.reconnect_backoff, "reconnect_backoff")?;
    nonzero(c.signal_retry, "signal_retry")?;

    let g = &c.gossip;
    require(g.hop_limit >= 1, "gossip.hop_limit", AT_LEAST_1)?;
    require(g.retry_factor >= 1, "gossip.retry_factor", AT_LEAST_1)?;
    require(
        g.max_ids_per_frame >= 1,
        "gossip.max_ids_per_frame",
        AT_LEAST_1,
    )?;
    require(g.max_seen >= 1, "gossip.max_seen", AT_LEAST_1)?;
    require(g.max_announcers >= 1, "gossip.max_announcers", AT_LEAST_1)?;
    nonzero(g.lazy_flush_interval, "gossip.lazy_flush_interval")?;
    require(
        (1..=gossip_core::wire::MAX_TREES).contains(&g.trees),
        "gossip.trees",
        "must be between 1 and gossip_core::wire::MAX_TREES",
    )?;
    nonzero(g.tree_refresh_interval, "gossip.tree_refresh_interval")?;
    nonzero(g.retry_initial, "gossip.retry_initial")?;

    let k = &c.kademlia;
    require(k.k >= 1, "kademlia_k", AT_LEAST_1)?;
    require(k.alpha >= 1, "kademlia.alpha", AT_LEAST_1)?;
    require(
        k.max_lookup_candidates >= k.k + k.alpha,
        "kademlia.max_lookup_candidates",
        "must be at least k + alpha",
    )?;
    require(k.max_queries >= 1, "kademlia.max_queries", AT_LEAST_1)?;
    require(k.max_outputs >= 1, "kademlia.max_outputs", AT_LEAST_1)?;
    require(
        k.max_message_bytes >= k.max_value_bytes + KADEMLIA_MESSAGE_OVERHEAD,
        "kademlia.max_message_bytes",
        "must leave room for a value of max_value_bytes",
    )?;
    require(
        k.max_message_bytes >= k.k * kademlia_core::ID_LEN + KADEMLIA_MESSAGE_OVERHEAD,
        "kademlia.max_message_bytes",
        "must leave room for k contacts",
    )?;
    require(
        k.republish_interval < k.record_ttl,
        "kademlia.republish_interval",
        "must be shorter than record_ttl",
    )?;
    nonzero(k.request_timeout, "kademlia.request_timeout")?;
    nonzero(k.refresh_interval, "kademlia.refresh_interval")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_is_valid() {
        assert_eq!(validate(&mesh_core::Config::default()), Ok(()));
    }

    #[test]
    fn each_refusal_names_its_setting() {
        type BreakIt = fn(&mut mesh_core::Config);
        let cases: [(&str, BreakIt); 6] = [
            ("max_peers", |c| c.max_peers = 0),
            ("random_links", |c| c.random_links = c.max_peers + 1),
            ("max_frame_bytes", |c| c.max_frame_bytes = 10),
            ("keepalive_interval", |c| {
                c.keepalive_interval = Duration::ZERO
            }),
            ("gossip.trees", |c| c.gossip.trees = 0),
            ("kademlia.alpha", |c| c.kademlia.alpha = 0),
        ];
        for (setting, break_it) in cases {
            let mut config = mesh_core::Config::default();
            break_it(&mut config);
            let err = validate(&config).expect_err(setting);
            assert_eq!(err.setting, setting);
        }
    }
}
