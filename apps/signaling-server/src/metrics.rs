//! Counters for `GET /metrics`, encoded by prometheus-client (OpenMetrics text, which
//! Prometheus scrapes).
//!
//! The names: `signaling_clients`, `signaling_joined_clients`, `signaling_joins_total`,
//! `signaling_relayed_messages_total`, `signaling_refused_connections_total`, `signaling_rooms`,
//! `signaling_rejected_inputs_total{reason}`, `signaling_largest_room_clients` and
//! `signaling_rooms_by_size{size}` (prometheus-client appends `_total` to a counter's registered
//! name).
//!
//! With `--redis` (a cluster), also: `signaling_cluster_relays_out_total` (relays handed to
//! Redis for a peer of another server), `signaling_cluster_relays_in_total` (relays from other
//! servers), `signaling_cluster_dropped_total` (deliveries to other servers lost: queue full or
//! Redis unreachable), `signaling_cluster_redis_up` (1 while Redis answers),
//! `signaling_cluster_servers` (live servers), `signaling_cluster_remote_clients` (ids held by
//! the other servers) and `signaling_cluster_redis_rtt_seconds` (the heartbeat's round trip).
//!
//! Room names are never exported: anyone may read `/metrics`, and a room's name is what a
//! stranger needs to join it. Rooms are counted by size bucket instead (a fixed label set).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use transport::ErrorCode;

/// The upper bounds of `signaling_rooms_by_size`'s buckets (members per room); the last bucket
/// holds the larger rooms.
pub(crate) const ROOM_SIZE_BUCKETS: [(usize, &str); 5] = [
    (1, "1"),
    (10, "2-10"),
    (100, "11-100"),
    (1000, "101-1000"),
    (usize::MAX, "1001+"),
];

/// The content type of [`Metrics::render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label of `signaling_rejected_inputs_total`: the error code's wire name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// The label of `signaling_rooms_by_size`: a bucket of [`ROOM_SIZE_BUCKETS`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SizeLabel {
    size: &'static str,
}

/// The figures of a server in a cluster (registered only with `--redis`).
#[derive(Debug)]
pub(crate) struct ClusterMetrics {
    pub(crate) relays_out: Counter,
    pub(crate) relays_in: Counter,
    pub(crate) dropped: Counter,
    pub(crate) redis_up: Gauge,
    pub(crate) servers: Gauge,
    remote_clients: Gauge,
    pub(crate) redis_rtt: Histogram,
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        Self {
            relays_out: Counter::default(),
            relays_in: Counter::default(),
            dropped: Counter::default(),
            redis_up: Gauge::default(),
            servers: Gauge::default(),
            remote_clients: Gauge::default(),
            // 50 µs to ~1.6 s.
            redis_rtt: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        }
    }
}

/// The server's counters, and the registry that encodes them.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) cluster: ClusterMetrics,
    pub(crate) clients: Gauge,
    pub(crate) joins: Counter,
    pub(crate) relayed: Counter,
    pub(crate) refused_connections: Counter,
    rejected: Family<Reason, Counter>,
    /// Set from the registry at each scrape.
    joined: Gauge,
    rooms: Gauge,
    largest_room: Gauge,
    rooms_by_size: Family<SizeLabel, Gauge>,
    registry: Registry,
    /// Serialises scrapes: each sets the scrape-time gauges, then encodes them.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Metrics {
    /// The metrics of a server, with the cluster's figures when `cluster`.
    pub(crate) fn new(cluster: bool) -> Self {
        let metrics = Self {
            cluster: ClusterMetrics::default(),
            clients: Gauge::default(),
            joins: Counter::default(),
            relayed: Counter::default(),
            refused_connections: Counter::default(),
            rejected: Family::default(),
            joined: Gauge::default(),
            rooms: Gauge::default(),
            largest_room: Gauge::default(),
            rooms_by_size: Family::default(),
            registry: Registry::default(),
            scrape: Mutex::new(()),
        };
        // Every code is listed from the start, at 0, so that a rate over it is defined.
        for code in ErrorCode::ALL {
            let _ = metrics.rejected.get_or_create(&Reason {
                reason: code.as_str(),
            });
        }
        let mut metrics = metrics;
        let registry = &mut metrics.registry;
        registry.register(
            "signaling_clients",
            "Connected WebSocket clients",
            metrics.clients.clone(),
        );
        registry.register(
            "signaling_joined_clients",
            "Clients holding a peer id",
            metrics.joined.clone(),
        );
        registry.register("signaling_joins", "Successful joins", metrics.joins.clone());
        registry.register(
            "signaling_relayed_messages",
            "Messages relayed from one peer to another",
            metrics.relayed.clone(),
        );
        registry.register(
            "signaling_refused_connections",
            "Connections refused because the server was full",
            metrics.refused_connections.clone(),
        );
        registry.register(
            "signaling_rooms",
            "Rooms with at least one member",
            metrics.rooms.clone(),
        );
        registry.register(
            "signaling_rejected_inputs",
            "Inputs answered with an error, by code",
            metrics.rejected.clone(),
        );
        registry.register(
            "signaling_largest_room_clients",
            "Members of the largest room",
            metrics.largest_room.clone(),
        );
        registry.register(
            "signaling_rooms_by_size",
            "Rooms by their number of members (room names are not exported)",
            metrics.rooms_by_size.clone(),
        );
        if cluster {
            let c = &metrics.cluster;
            registry.register(
                "signaling_cluster_relays_out",
                "Relays handed to Redis for a peer of another server",
                c.relays_out.clone(),
            );
            registry.register(
                "signaling_cluster_relays_in",
                "Relays from other servers of the cluster",
                c.relays_in.clone(),
            );
            registry.register(
                "signaling_cluster_dropped",
                "Deliveries to other servers lost (queue full or Redis unreachable)",
                c.dropped.clone(),
            );
            registry.register(
                "signaling_cluster_redis_up",
                "1 while Redis answers the heartbeat",
                c.redis_up.clone(),
            );
            registry.register(
                "signaling_cluster_servers",
                "Live servers of the cluster, this one included",
                c.servers.clone(),
            );
            registry.register(
                "signaling_cluster_remote_clients",
                "Ids held by the other servers of the cluster",
                c.remote_clients.clone(),
            );
            registry.register(
                "signaling_cluster_redis_rtt_seconds",
                "Round trip of the heartbeat's Redis pipeline",
                c.redis_rtt.clone(),
            );
        }
        metrics
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    pub(crate) fn reject(&self, code: ErrorCode) {
        self.rejected
            .get_or_create(&Reason {
                reason: code.as_str(),
            })
            .inc();
    }

    /// The text of one scrape, with the registry's figures of this moment.
    pub(crate) fn render(
        &self,
        joined: usize,
        remote: usize,
        rooms: usize,
        room_sizes: impl IntoIterator<Item = usize>,
    ) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.joined.set(gauge_value(joined.saturating_sub(remote)));
        self.cluster.remote_clients.set(gauge_value(remote));
        self.rooms.set(gauge_value(rooms));
        let mut buckets = [0usize; ROOM_SIZE_BUCKETS.len()];
        let mut largest = 0;
        for size in room_sizes {
            largest = largest.max(size);
            if let Some(i) = ROOM_SIZE_BUCKETS.iter().position(|(max, _)| size <= *max) {
                buckets[i] += 1;
            }
        }
        self.largest_room.set(gauge_value(largest));
        for ((_, label), count) in ROOM_SIZE_BUCKETS.iter().zip(buckets) {
            self.rooms_by_size
                .get_or_create(&SizeLabel { size: label })
                .set(gauge_value(count));
        }
        let mut out = String::with_capacity(4096);
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%err, "could not encode the metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// One parsed scrape: `# TYPE` per family, and each sample's value by its full name with labels.
    struct Scrape {
        types: HashMap<String, String>,
        samples: HashMap<String, f64>,
    }

    /// A strict reader of the OpenMetrics text: every line is a comment of a known kind or
    /// `name{labels} value`, the text ends with `# EOF`, and every sample belongs to a family
    /// declared before it.
    fn parse(text: &str) -> Scrape {
        let mut types = HashMap::new();
        let mut samples = HashMap::new();
        let mut eof = false;
        for line in text.lines() {
            assert!(!eof, "a line after # EOF: {line}");
            if line == "# EOF" {
                eof = true;
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment {line}");
            let (series, value) = line.rsplit_once(' ').expect("name value");
            let name = series.split('{').next().expect("name");
            let family = types
                .keys()
                .find(|f| name == f.as_str() || name == format!("{f}_total"))
                .unwrap_or_else(|| panic!("{name} has no # TYPE before it"));
            assert!(!family.is_empty());
            let labels = &series[name.len()..];
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
            assert!(
                samples.insert(series.to_owned(), value).is_none(),
                "twice: {series}"
            );
        }
        assert!(eof, "the text ends with # EOF");
        Scrape { types, samples }
    }

    #[test]
    fn every_metric_keeps_its_name_type_and_value() {
        let metrics = Metrics::default();
        metrics.clients.inc();
        metrics.clients.inc();
        metrics.clients.dec();
        metrics.joins.inc_by(3);
        metrics.relayed.inc_by(7);
        metrics.refused_connections.inc();
        metrics.reject(ErrorCode::InvalidJson);
        metrics.reject(ErrorCode::InvalidJson);
        let scrape = parse(&metrics.render(7, 0, 3, [5, 2, 1]));

        for (family, kind) in [
            ("signaling_clients", "gauge"),
            ("signaling_joined_clients", "gauge"),
            ("signaling_joins", "counter"),
            ("signaling_relayed_messages", "counter"),
            ("signaling_refused_connections", "counter"),
            ("signaling_rooms", "gauge"),
            ("signaling_rejected_inputs", "counter"),
            ("signaling_largest_room_clients", "gauge"),
            ("signaling_rooms_by_size", "gauge"),
        ] {
            assert_eq!(
                scrape.types.get(family).map(String::as_str),
                Some(kind),
                "{family}"
            );
        }
        let value = |series: &str| {
            scrape
                .samples
                .get(series)
                .copied()
                .unwrap_or_else(|| panic!("no sample {series}"))
        };
        assert_eq!(value("signaling_clients"), 1.0);
        assert_eq!(value("signaling_joined_clients"), 7.0);
        assert_eq!(value("signaling_joins_total"), 3.0);
        assert_eq!(value("signaling_relayed_messages_total"), 7.0);
        assert_eq!(value("signaling_refused_connections_total"), 1.0);
        assert_eq!(value("signaling_rooms"), 3.0);
        assert_eq!(value("signaling_largest_room_clients"), 5.0);
        assert_eq!(value(r#"signaling_rooms_by_size{size="1"}"#), 1.0);
        assert_eq!(value(r#"signaling_rooms_by_size{size="2-10"}"#), 2.0);
        assert_eq!(value(r#"signaling_rooms_by_size{size="11-100"}"#), 0.0);
        assert_eq!(
            value(r#"signaling_rejected_inputs_total{reason="invalid_json"}"#),
            2.0
        );
        // Every code is listed, at 0 until it happens.
        for code in ErrorCode::ALL {
            let series = format!(
                r#"signaling_rejected_inputs_total{{reason="{}"}}"#,
                code.as_str()
            );
            let expected = if *code == ErrorCode::InvalidJson {
                2.0
            } else {
                0.0
            };
            assert_eq!(value(&series), expected, "{series}");
        }
    }

    #[test]
    fn a_room_that_emptied_is_no_longer_counted() {
        let metrics = Metrics::default();
        let first = parse(&metrics.render(1, 0, 1, [1]));
        assert_eq!(
            first.samples.get(r#"signaling_rooms_by_size{size="1"}"#),
            Some(&1.0)
        );
        let second = parse(&metrics.render(0, 0, 0, Vec::new()));
        assert_eq!(
            second.samples.get(r#"signaling_rooms_by_size{size="1"}"#),
            Some(&0.0)
        );
        assert_eq!(
            second.samples.get("signaling_largest_room_clients"),
            Some(&0.0)
        );
        assert_eq!(second.samples.get("signaling_rooms"), Some(&0.0));
    }
}
