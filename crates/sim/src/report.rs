//! What a scenario returns: its measurements, a human table and one JSON object.
//!
//! # Lookup figures: what is measured
//!
//! - `lookup_*` are the lookup users get, mesh-core's `Node::find_node` (recursive: probes routed toward
//!   the target, answered by the first node on the way that knows it). `lookup_success`: lookups whose
//!   closest peer found is the target, over lookups started. `lookup_hops_p50/p99`: **rounds**, one
//!   round being one wave of up to `lookup_parallelism` (3) probes and the answers to it (0 when the
//!   target was a link or a link's link). A round is not a hop: `lookup_links_p50/p99` are the **link
//!   traversals** on the lookup's critical path (per round, the probe and the answer that ended it,
//!   summed; a server relay counts as one). `lookup_ms_p50/p99`: start to `LookupFinished`, virtual ms.
//! - `kad_lookup_*` (extra keys) are kademlia-core's iterative lookup (`Node::dht_find_node`, the lookup
//!   under `get_value`/`put_value`) with its RPCs carried over links or routed over the mesh:
//!   `kad_lookup_success` counts lookups whose closest answering nodes include the target;
//!   `kad_lookup_hops_*` are kademlia-core's rounds; `kad_lookup_ms_*` its duration.
//! - `direct_hops_*` are link traversals of a routed direct message (+1 for a server relay).
//!
//! # DHT figures (`dht` scenario)
//!
//! - `put_success`: puts (`Node::put`) whose `PutFinished` says at least one node stores the record,
//!   over puts started; `put_stored_p50` (extra key): the median of `stored` over finished puts.
//! - `get_success`: gets (`Node::get`) whose `GetFinished` carries the record with the value it was
//!   put with, over gets started. `get_hops_p50/p99`: `GetFinished.hops` (link traversals of the
//!   request that found the record, 0 from the local store) of the gets that found it.
//!   `get_ms_p50/p99`: the get command to `GetFinished`, virtual ms, over every finished get (a
//!   failed one counts with its whole duration).
//! - `records_lost`: records whose put succeeded that no node live at the end holds (stored for
//!   others or published, with the value put).

use serde_json::{Map, Value, json};

/// The measurements of one run. `None`: the scenario does not measure it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Nodes at the start.
    pub nodes: usize,
    /// The seed that replays this run.
    pub seed: u64,
    /// Dissemination strategy (`plumtree` or `flood`).
    pub strategy: String,
    /// Broadcast deliveries to the nodes expected to deliver, over that expectation.
    pub delivery_ratio: Option<f64>,
    /// Relative message redundancy: payload transmissions / (receivers - 1) - 1, after the warm-up.
    pub rmr: Option<f64>,
    /// Last delivery hop, Plumtree's LDH: each broadcast's last delivery hop (the most hops any of its
    /// deliveries took), averaged over the measured broadcasts. See `ldh_max` for the single worst.
    pub ldh: Option<f64>,
    /// The most hops any single delivery of any measured broadcast took (extra key).
    pub ldh_max: Option<u32>,
    /// Publish-to-delivery latency, median, in ms of virtual time.
    pub latency_ms_p50: Option<f64>,
    /// Publish-to-delivery latency, 99th percentile.
    pub latency_ms_p99: Option<f64>,
    /// `find_node` lookups that found their target, over lookups started (see the module docs).
    pub lookup_success: Option<f64>,
    /// Rounds (probe waves) a `find_node` lookup took, median. Not link traversals: see `lookup_links_*`.
    pub lookup_hops_p50: Option<f64>,
    /// Rounds a `find_node` lookup took, 99th percentile.
    pub lookup_hops_p99: Option<f64>,
    /// `find_node` duration, median, ms of virtual time.
    pub lookup_ms_p50: Option<f64>,
    /// `find_node` duration, 99th percentile.
    pub lookup_ms_p99: Option<f64>,
    /// Link traversals on a finished `find_node`'s critical path (probes and answers), median.
    pub lookup_links_p50: Option<f64>,
    /// Link traversals on a finished `find_node`'s critical path, 99th percentile.
    pub lookup_links_p99: Option<f64>,
    /// kademlia-core's iterative lookups (`dht_find_node`) that found their target (extra key).
    pub kad_lookup_success: Option<f64>,
    /// kademlia-core's rounds of a `dht_find_node`, median (extra key).
    pub kad_lookup_hops_p50: Option<f64>,
    /// kademlia-core's rounds of a `dht_find_node`, 99th percentile (extra key).
    pub kad_lookup_hops_p99: Option<f64>,
    /// `dht_find_node` duration, median, ms (extra key).
    pub kad_lookup_ms_p50: Option<f64>,
    /// `dht_find_node` duration, 99th percentile, ms (extra key).
    pub kad_lookup_ms_p99: Option<f64>,
    /// Direct messages delivered, over messages sent.
    pub direct_delivery_ratio: Option<f64>,
    /// Link traversals of a delivered direct message, median.
    pub direct_hops_p50: Option<f64>,
    /// Link traversals of a delivered direct message, 99th percentile.
    pub direct_hops_p99: Option<f64>,
    /// DHT puts that at least one node stores, over puts started (see the module docs).
    pub put_success: Option<f64>,
    /// Nodes that stored a finished put, median (extra key).
    pub put_stored_p50: Option<f64>,
    /// DHT gets that returned the record with the right value, over gets started.
    pub get_success: Option<f64>,
    /// Link traversals of a successful get's request, median.
    pub get_hops_p50: Option<f64>,
    /// Link traversals of a successful get's request, 99th percentile.
    pub get_hops_p99: Option<f64>,
    /// Get duration, median, ms of virtual time.
    pub get_ms_p50: Option<f64>,
    /// Get duration, 99th percentile.
    pub get_ms_p99: Option<f64>,
    /// Records put successfully that no live node holds at the end.
    pub records_lost: Option<u64>,
    /// Connected components of the live nodes at the end, over verified links.
    pub components: Option<usize>,
    /// Wall-clock seconds of the run (not deterministic).
    pub wall_s: f64,
    /// Peak resident memory of the process, MiB (VmHWM; not deterministic).
    pub peak_rss_mb: Option<f64>,
    /// CPU seconds of the run (on a shared machine wall time overstates the cost; not deterministic).
    pub cpu_s: Option<f64>,
    /// Events the simulation engine processed (frames, timers, joins): the run's size, deterministic.
    pub events: Option<u64>,
    /// The engine that ran it: `sequential`, or `sharded` (the same run for any number of shards;
    /// [`crate::SimConfig::shards`]); `none` for the hop model, which simulates nothing
    /// ([`crate::hop_model`]).
    pub engine: String,
    /// Further lines for the human table: definitions and counters (deterministic).
    pub notes: Vec<(String, String)>,
}

impl Report {
    /// An empty report for a run.
    pub fn new(scenario: &str, nodes: usize, seed: u64, strategy: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            nodes,
            seed,
            strategy: strategy.to_owned(),
            delivery_ratio: None,
            rmr: None,
            ldh: None,
            ldh_max: None,
            latency_ms_p50: None,
            latency_ms_p99: None,
            lookup_success: None,
            lookup_hops_p50: None,
            lookup_hops_p99: None,
            lookup_ms_p50: None,
            lookup_ms_p99: None,
            lookup_links_p50: None,
            lookup_links_p99: None,
            kad_lookup_success: None,
            kad_lookup_hops_p50: None,
            kad_lookup_hops_p99: None,
            kad_lookup_ms_p50: None,
            kad_lookup_ms_p99: None,
            direct_delivery_ratio: None,
            direct_hops_p50: None,
            direct_hops_p99: None,
            put_success: None,
            put_stored_p50: None,
            get_success: None,
            get_hops_p50: None,
            get_hops_p99: None,
            get_ms_p50: None,
            get_ms_p99: None,
            records_lost: None,
            components: None,
            wall_s: 0.0,
            peak_rss_mb: None,
            cpu_s: None,
            events: None,
            engine: "sequential".to_owned(),
            notes: Vec::new(),
        }
    }

    /// Add a note to the human table.
    pub fn note(&mut self, key: &str, value: impl ToString) {
        self.notes.push((key.to_owned(), value.to_string()));
    }

    /// The report without its non-deterministic fields (wall time, memory): what one seed replays.
    pub fn deterministic(&self) -> Report {
        Report {
            wall_s: 0.0,
            peak_rss_mb: None,
            cpu_s: None,
            ..self.clone()
        }
    }

    /// The JSON object: the keys `cargo xtask sim --json` promises, `null` where not measured.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("scenario".into(), json!(self.scenario));
        m.insert("nodes".into(), json!(self.nodes));
        m.insert("seed".into(), json!(self.seed));
        m.insert("strategy".into(), json!(self.strategy));
        m.insert("delivery_ratio".into(), json!(self.delivery_ratio));
        m.insert("rmr".into(), json!(self.rmr.map(round4)));
        m.insert("ldh".into(), json!(self.ldh.map(round4)));
        m.insert("latency_ms_p50".into(), json!(self.latency_ms_p50));
        m.insert("latency_ms_p99".into(), json!(self.latency_ms_p99));
        m.insert("lookup_success".into(), json!(self.lookup_success));
        m.insert("lookup_hops_p50".into(), json!(self.lookup_hops_p50));
        m.insert("lookup_hops_p99".into(), json!(self.lookup_hops_p99));
        m.insert("lookup_ms_p50".into(), json!(self.lookup_ms_p50));
        m.insert("lookup_ms_p99".into(), json!(self.lookup_ms_p99));
        m.insert(
            "direct_delivery_ratio".into(),
            json!(self.direct_delivery_ratio),
        );
        m.insert("direct_hops_p50".into(), json!(self.direct_hops_p50));
        m.insert("direct_hops_p99".into(), json!(self.direct_hops_p99));
        m.insert("put_success".into(), json!(self.put_success.map(round4)));
        m.insert("get_success".into(), json!(self.get_success.map(round4)));
        m.insert("get_hops_p50".into(), json!(self.get_hops_p50));
        m.insert("get_hops_p99".into(), json!(self.get_hops_p99));
        m.insert("get_ms_p50".into(), json!(self.get_ms_p50));
        m.insert("get_ms_p99".into(), json!(self.get_ms_p99));
        m.insert("records_lost".into(), json!(self.records_lost));
        m.insert("components".into(), json!(self.components));
        m.insert("wall_s".into(), json!(round4(self.wall_s)));
        m.insert("peak_rss_mb".into(), json!(self.peak_rss_mb));
        // Extra keys: the link traversals of `find_node` (whose rounds are `lookup_hops_*`), and
        // kademlia-core's iterative lookup over the mesh (`dht_find_node`). See the module docs.
        m.insert("ldh_max".into(), json!(self.ldh_max));
        m.insert("lookup_links_p50".into(), json!(self.lookup_links_p50));
        m.insert("lookup_links_p99".into(), json!(self.lookup_links_p99));
        m.insert("kad_lookup_success".into(), json!(self.kad_lookup_success));
        m.insert(
            "kad_lookup_hops_p50".into(),
            json!(self.kad_lookup_hops_p50),
        );
        m.insert(
            "kad_lookup_hops_p99".into(),
            json!(self.kad_lookup_hops_p99),
        );
        m.insert("kad_lookup_ms_p50".into(), json!(self.kad_lookup_ms_p50));
        m.insert("kad_lookup_ms_p99".into(), json!(self.kad_lookup_ms_p99));
        m.insert("put_stored_p50".into(), json!(self.put_stored_p50));
        // The run's cost, for `cargo xtask sim-scale`: CPU seconds beside wall time, and the events
        // they were spent on.
        m.insert("cpu_s".into(), json!(self.cpu_s.map(round2)));
        m.insert("events".into(), json!(self.events));
        m.insert("engine".into(), json!(self.engine));
        Value::Object(m)
    }

    /// The human table.
    pub fn table(&self) -> String {
        fn opt<T: ToString>(v: &Option<T>) -> String {
            v.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
        }
        let rows: Vec<(&str, String)> = vec![
            ("scenario", self.scenario.clone()),
            ("nodes", self.nodes.to_string()),
            ("seed", self.seed.to_string()),
            ("strategy", self.strategy.clone()),
            ("delivery_ratio", opt(&self.delivery_ratio)),
            ("rmr", opt(&self.rmr.map(round4))),
            ("ldh (mean of each broadcast's)", opt(&self.ldh.map(round4))),
            ("ldh_max (worst single delivery)", opt(&self.ldh_max)),
            (
                "latency_ms p50 / p99",
                pair(self.latency_ms_p50, self.latency_ms_p99),
            ),
            ("lookup_success", opt(&self.lookup_success)),
            (
                "lookup_hops p50 / p99",
                pair(self.lookup_hops_p50, self.lookup_hops_p99),
            ),
            (
                "lookup_ms p50 / p99",
                pair(self.lookup_ms_p50, self.lookup_ms_p99),
            ),
            (
                "lookup_links p50 / p99",
                pair(self.lookup_links_p50, self.lookup_links_p99),
            ),
            ("kad_lookup_success", opt(&self.kad_lookup_success)),
            (
                "kad_lookup_hops p50 / p99",
                pair(self.kad_lookup_hops_p50, self.kad_lookup_hops_p99),
            ),
            (
                "kad_lookup_ms p50 / p99",
                pair(self.kad_lookup_ms_p50, self.kad_lookup_ms_p99),
            ),
            ("direct_delivery_ratio", opt(&self.direct_delivery_ratio)),
            (
                "direct_hops p50 / p99",
                pair(self.direct_hops_p50, self.direct_hops_p99),
            ),
            ("put_success", opt(&self.put_success.map(round4))),
            ("put_stored p50", opt(&self.put_stored_p50)),
            ("get_success", opt(&self.get_success.map(round4))),
            (
                "get_hops p50 / p99",
                pair(self.get_hops_p50, self.get_hops_p99),
            ),
            ("get_ms p50 / p99", pair(self.get_ms_p50, self.get_ms_p99)),
            ("records_lost", opt(&self.records_lost)),
            ("components", opt(&self.components)),
            ("engine", self.engine.clone()),
            ("wall_s", format!("{:.2}", self.wall_s)),
            ("peak_rss_mb", opt(&self.peak_rss_mb)),
            ("cpu_s", opt(&self.cpu_s.map(round2))),
        ];
        let width = rows
            .iter()
            .map(|(k, _)| k.len())
            .chain(self.notes.iter().map(|(k, _)| k.len()))
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(self.notes.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            out.push_str(&format!("{k:<width$}  {v}\n"));
        }
        out
    }
}

fn pair(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{a} / {b}"),
        _ => "-".to_owned(),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

pub use netsim::percentile;

/// Peak resident set of this process in MiB, from `VmHWM` in `/proc/self/status` (Linux only).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

/// CPU time of this process in seconds, every thread's (a sharded run's too, including those that
/// ended), from the user and system times of `/proc/self/stat` in Linux's 100 ticks a second (Linux
/// only).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, so split after its closing parenthesis):
    // state is the 3rd field of the line, utime the 14th and stime the 15th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_key_with_nulls() {
        let r = Report::new("lookup", 10, 1, "plumtree");
        let v = r.to_json();
        let obj = v.as_object().expect("object");
        for key in [
            "scenario",
            "nodes",
            "seed",
            "strategy",
            "delivery_ratio",
            "rmr",
            "ldh",
            "latency_ms_p50",
            "latency_ms_p99",
            "lookup_success",
            "lookup_hops_p50",
            "lookup_hops_p99",
            "lookup_ms_p50",
            "lookup_ms_p99",
            "direct_delivery_ratio",
            "direct_hops_p50",
            "direct_hops_p99",
            "components",
            "wall_s",
            "peak_rss_mb",
            "ldh_max",
            "lookup_links_p50",
            "lookup_links_p99",
            "kad_lookup_success",
            "kad_lookup_hops_p50",
            "kad_lookup_hops_p99",
            "kad_lookup_ms_p50",
            "kad_lookup_ms_p99",
            "put_success",
            "get_success",
            "get_hops_p50",
            "get_hops_p99",
            "get_ms_p50",
            "get_ms_p99",
            "records_lost",
            "put_stored_p50",
            "cpu_s",
            "events",
            "engine",
        ] {
            assert!(obj.contains_key(key), "{key}");
        }
        assert_eq!(obj.len(), 39);
        assert!(obj["rmr"].is_null());
    }
}
