//! [`Protocol`] for mesh-core's [`Node`], and [`run`]: a scenario over mesh-core.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use kademlia_core::{Instant, NodeId};
use mesh_core::{Node, SignatureCheck};

use crate::protocol::{Event, Output, Protocol, ServerInput};
use crate::report::Report;
use crate::scenario::{Scenario, ScenarioArgs, Strategy, run_with};

/// Distinct signatures remembered per stripe of the memo; past it the stripe starts afresh.
const MAX_CHECKED: usize = 1 << 12;

/// Stripes of the memo, each behind its own lock (by a byte of the signature): a sharded run's
/// threads rarely wait for each other.
const STRIPES: usize = 16;

/// Public keys kept decompressed; past it the cache starts afresh.
const MAX_KEYS: usize = 1 << 18;

/// Signatures already checked: (key, signature) -> [(message, valid)].
type Checked = HashMap<([u8; 32], [u8; 64]), Vec<(Vec<u8>, bool)>>;

/// The signatures checked in this process (shared by a sharded run's threads).
static CHECKED: LazyLock<[Mutex<Checked>; STRIPES]> =
    LazyLock::new(|| core::array::from_fn(|_| Mutex::new(HashMap::new())));

/// The memo's stripe of `signature`, locked.
fn stripe(signature: &[u8; 64]) -> std::sync::MutexGuard<'static, Checked> {
    CHECKED[usize::from(signature[0]) % STRIPES]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Public keys decompressed in this process (`None`: not a valid key).
static KEYS: LazyLock<Mutex<HashMap<[u8; 32], Option<VerifyingKey>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// [`gossip_core::verify`], memoized across the simulated nodes of this process. Every node still checks
/// every signature it receives and gets exactly the answer ed25519 gives (the memo is keyed by the
/// whole key, signature and message); only the arithmetic, a pure function of those bytes, is done
/// once per process instead of once per node. The simulator's CPU goes to the protocol, not to
/// 10,000 identical verifications of each broadcast. Routed messages and hellos, each checked by one
/// node (or its relays), are put in the memo by their signer ([`memo_signed`]); each node's key is
/// decompressed once per process.
fn memo_verify(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let known = stripe(signature)
        .get(&(*public_key, *signature))
        .and_then(|known| known.iter().find(|(m, _)| m.as_slice() == message))
        .map(|(_, ok)| *ok);
    if let Some(ok) = known {
        return ok;
    }
    // Verified without the lock: another thread's checks wait only for the memo itself.
    let ok = verify_with_cached_key(public_key, message, signature);
    remember(&mut stripe(signature), public_key, message, signature, ok);
    ok
}

/// Puts a check's answer in the memo (started afresh once it holds [`MAX_CHECKED`] signatures).
fn remember(
    checked: &mut Checked,
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
    ok: bool,
) {
    if checked.len() >= MAX_CHECKED {
        checked.clear();
    }
    checked
        .entry((*public_key, *signature))
        .or_default()
        .push((message.to_vec(), ok));
}

/// Told of every routed message and hello a simulated node signs: the memo takes the signature as
/// checked and valid, the answer ed25519's strict check gives for any signature it made with a key
/// derived from a secret. The receiving node's check then finds it here, with the exact bytes; a
/// signature or bytes changed on the way (an attacker's) miss the memo and are verified. This saves
/// the one real verification per routed message and hello that the memo could not (each is verified
/// by one node, or by its relays and then that node).
fn memo_signed(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) {
    remember(&mut stripe(signature), public_key, message, signature, true);
}

/// [`gossip_core::verify`] (strict ed25519) with the key decompressed once per process: the same
/// answer for the same bytes.
fn verify_with_cached_key(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let cached = KEYS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(public_key)
        .copied();
    let key = cached.unwrap_or_else(|| {
        let key = VerifyingKey::from_bytes(public_key).ok();
        let mut keys = KEYS.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(*public_key, key);
        key
    });
    key.is_some_and(|key| {
        key.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    })
}

impl Protocol for Node {
    type Config = mesh_core::Config;

    fn create(secret_key: [u8; 32], seed: u64, config: &mesh_core::Config) -> Self {
        Node::with_signature_check(
            secret_key,
            config.clone(),
            seed,
            SignatureCheck::new(memo_verify).with_signed(memo_signed),
        )
    }
    fn local_id(&self) -> NodeId {
        Node::local_id(self)
    }
    fn join(&mut self, now: Instant) {
        Node::join(self, now);
    }
    fn handle_server(&mut self, now: Instant, input: ServerInput) {
        let input = match input {
            ServerInput::BootstrapPeers(peers) => mesh_core::ServerInput::BootstrapPeers(peers),
            ServerInput::PeerJoined(peer) => mesh_core::ServerInput::PeerJoined(peer),
            ServerInput::PeerLeft(peer) => mesh_core::ServerInput::PeerLeft(peer),
            ServerInput::Relayed { from, payload } => {
                mesh_core::ServerInput::Relayed { from, payload }
            }
        };
        Node::handle_server(self, now, input);
    }
    fn handle_link_open(
        &mut self,
        now: Instant,
        peer: NodeId,
        local_fingerprint: Vec<u8>,
        remote_fingerprint: Vec<u8>,
    ) {
        Node::handle_link_open(self, now, peer, local_fingerprint, remote_fingerprint);
    }
    fn handle_message(&mut self, now: Instant, peer: NodeId, bytes: &[u8]) {
        Node::handle_message(self, now, peer, bytes);
    }
    fn handle_link_closed(&mut self, now: Instant, peer: NodeId) {
        Node::handle_link_closed(self, now, peer);
    }
    fn send_signal(&mut self, now: Instant, to: NodeId, payload: Vec<u8>) {
        Node::send_signal(self, now, to, payload);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Node::handle_timeout(self, now);
    }
    fn poll_output(&mut self) -> Option<Output> {
        use mesh_core::Event as E;
        use mesh_core::Output as O;
        Some(match Node::poll_output(self)? {
            O::Transmit { link, bytes } => Output::Transmit { link, bytes },
            O::Connect { peer, initiator } => Output::Connect { peer, initiator },
            O::Disconnect { peer, .. } => Output::Disconnect { peer },
            O::Signal { to, payload } => Output::Signal { to, payload },
            O::Event(event) => Output::Event(match event {
                E::Signal { from, payload } => Event::Signal { from, payload },
                E::Message {
                    from,
                    topic,
                    data,
                    hops,
                    ..
                } => Event::Message {
                    from,
                    broadcast: topic.is_some(),
                    data,
                    hops,
                },
                E::LookupFinished {
                    id,
                    peers,
                    rounds,
                    hops,
                    ..
                } => Event::LookupFinished {
                    id: id.0,
                    peers,
                    rounds,
                    hops,
                },
                E::Dht(kademlia_core::Event::QueryFinished {
                    id,
                    result: kademlia_core::QueryResult::FindNode { closest, .. },
                    rounds,
                    ..
                }) => Event::DhtLookupFinished {
                    id: id.as_u64(),
                    closest,
                    rounds,
                },
                E::PutFinished {
                    id,
                    stored,
                    asked,
                    refused,
                    ..
                } => Event::PutFinished {
                    id: id.0,
                    stored,
                    asked,
                    refused,
                },
                E::GetFinished {
                    id,
                    record,
                    answered,
                    hops,
                    rounds,
                    ..
                } => Event::GetFinished {
                    id: id.0,
                    value: record.map(|r| r.value),
                    answered,
                    hops,
                    rounds,
                },
                E::DirectFailed { id, .. } => Event::DirectFailed { id: id.0 },
                E::PeerConnected { peer } => Event::PeerConnected { peer },
                _ => Event::Other,
            }),
            // An output this simulator does not model.
            _ => Output::Event(Event::Other),
        })
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Node::poll_timeout(self)
    }
    fn subscribe(&mut self, topic: &str) {
        // A refused subscription shows up as missing deliveries in the report.
        let _ = Node::subscribe(self, topic);
    }
    fn broadcast(&mut self, now: Instant, topic: &str, data: Vec<u8>) -> bool {
        Node::broadcast(self, now, topic, data).is_ok()
    }
    fn send(&mut self, now: Instant, to: NodeId, data: Vec<u8>) -> Option<u64> {
        Node::send(self, now, to, data).ok().map(|id| id.0)
    }
    fn dht_find_node(&mut self, now: Instant, target: NodeId) -> u64 {
        Node::dht_find_node(self, now, target).as_u64()
    }
    fn find_node(&mut self, now: Instant, target: NodeId) -> u64 {
        Node::find_node(self, now, target).0
    }
    fn dht_put(&mut self, now: Instant, name: &[u8], value: Vec<u8>) -> Option<u64> {
        Node::put(self, now, name, value).ok().map(|id| id.0)
    }
    fn dht_get(&mut self, now: Instant, name: &[u8]) -> Option<u64> {
        Node::get(self, now, name).ok().map(|id| id.0)
    }
    fn dht_records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.kademlia()
            .records()
            .chain(self.published())
            .map(|r| (r.salt.clone(), r.value.clone()))
            .collect()
    }
    fn links(&self) -> Vec<NodeId> {
        Node::links(self)
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = Node::stats(self);
        vec![
            ("links up", s.links_up),
            ("link failures (never opened)", s.link_failures),
            ("link requests / offers refused", s.rejections),
            ("links evicted", s.evictions),
            ("routed forwarded", s.routed_forwarded),
            ("routed backtracked", s.routed_backtracked),
            ("server fallbacks", s.server_fallbacks),
            ("dropped: no route", s.dropped_no_route),
            ("dropped: unexpected", s.dropped_unexpected),
            ("dropped: bad signature", s.dropped_bad_signature),
            ("signals resent", s.signals_resent),
            ("signal duplicates", s.signal_duplicates),
            ("hellos resent", s.hellos_resent),
            ("gossip tree changes", s.gossip.tree_changes),
            ("gossip tree root changes", s.gossip.tree_root_changes),
            ("gossip tree frames sent", s.gossip.tree_frames_sent),
            (
                "gossip tree frames sent by the periodic re-send",
                s.gossip.tree_frames_refreshed,
            ),
            ("gossip tree holds", s.gossip.tree_holds),
            ("gossip ihave ids repeated", s.gossip.announces_repeated),
            ("gossip grafts sent", s.gossip.grafts_sent),
            ("gossip retries", s.gossip.payload_retries),
        ]
    }
    fn payload_transmissions(&self) -> u64 {
        let g = &Node::stats(self).gossip;
        g.payload_sends + g.payload_retries + g.payload_graft_responses + g.payload_reroutes
    }
}

/// mesh-core's configuration for a strategy.
///
/// # Errors
/// None today: every strategy has a switch in gossip-core's `Config` (the `Result` stays for strategies
/// a core may not support).
pub fn node_config(strategy: Strategy) -> Result<mesh_core::Config, String> {
    let mut config = mesh_core::Config::default();
    config.gossip.strategy = match strategy {
        Strategy::Plumtree => gossip_core::Strategy::Plumtree,
        Strategy::Flood => gossip_core::Strategy::Flood,
    };
    Ok(config)
}

/// The node settings `--tune NAME=VALUE` can change (durations in milliseconds).
pub const TUNABLES: &[&str] = &[
    "trees",
    "eager_radius",
    "retry_min_ms",
    "retry_initial_ms",
    "graft_timeout_ms",
    "lazy_flush_ms",
    "max_peers",
    "random_links",
    "tree_advert_delay_ms",
    "tree_hop_cost_ms",
    "tree_feasible_successors",
    "tree_refresh_interval_ms",
    "tree_proof_max_age_ms",
    "announce_repeat_ms",
];

/// `config` with the settings of `tune` changed.
///
/// # Errors
/// An unknown name, a value that does not parse, or a configuration that does not validate.
pub fn apply_tune(config: &mut mesh_core::Config, tune: &[(String, String)]) -> Result<(), String> {
    for (name, value) in tune {
        let number: u64 = value
            .parse()
            .map_err(|_| format!("--tune {name}={value}: not a whole number"))?;
        let small = || usize::try_from(number).unwrap_or(usize::MAX);
        let millis = Duration::from_millis(number);
        match name.as_str() {
            "trees" => config.gossip.trees = small(),
            "eager_radius" => {
                config.gossip.eager_radius = u8::try_from(number)
                    .map_err(|_| format!("--tune eager_radius={value}: at most 255"))?;
            }
            "retry_min_ms" => config.gossip.retry_min = millis,
            "retry_initial_ms" => config.gossip.retry_initial = millis,
            "graft_timeout_ms" => config.gossip.graft_timeout = millis,
            "lazy_flush_ms" => config.gossip.lazy_flush_interval = millis,
            "max_peers" => config.max_peers = small(),
            "random_links" => config.random_links = small(),
            "tree_advert_delay_ms" => config.gossip.tree_advert_delay = millis,
            "tree_hop_cost_ms" => config.gossip.tree_hop_cost = millis,
            "tree_feasible_successors" => config.gossip.tree_feasible_successors = number != 0,
            "tree_refresh_interval_ms" => config.gossip.tree_refresh_interval = millis,
            "tree_proof_max_age_ms" => config.gossip.tree_proof_max_age = millis,
            "announce_repeat_ms" => config.gossip.announce_repeat = millis,
            _ => {
                return Err(format!(
                    "--tune {name}: unknown (one of {})",
                    TUNABLES.join(", ")
                ));
            }
        }
    }
    config.validate().map_err(|e| format!("--tune: {e}"))
}

/// Run a scenario over mesh-core nodes.
///
/// # Errors
/// When the strategy asked for is not available.
pub fn run(args: &ScenarioArgs) -> Result<Report, String> {
    let mut config = node_config(args.strategy)?;
    apply_tune(&mut config, &args.tune)?;
    if args.scenario == Scenario::BroadcastAttack {
        if args.shards > 0 {
            return Err("broadcast-attack runs sequentially (its attackers share state)".into());
        }
        return Ok(crate::attack::run(args, config));
    }
    if args.scenario == Scenario::HopModel {
        return Ok(crate::hop_model::run(args, &config));
    }
    let mut report = run_with::<Node>(args, config);
    for (name, value) in &args.tune {
        report.note(&format!("tune {name}"), value);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::Identity;

    /// Every name `--tune` lists is one it takes, and each changes the configuration; an unknown name
    /// is refused.
    #[test]
    fn every_tunable_is_taken_and_changes_the_configuration() {
        let default = node_config(crate::Strategy::Plumtree).expect("plumtree");
        for name in TUNABLES {
            let value = match *name {
                "tree_feasible_successors" => "0",
                "random_links" => "1",
                "trees" | "max_peers" | "eager_radius" => "7",
                _ => "12345",
            };
            let mut config = default.clone();
            apply_tune(&mut config, &[((*name).to_owned(), value.to_owned())])
                .unwrap_or_else(|e| panic!("{name}={value}: {e}"));
            assert_ne!(format!("{config:?}"), format!("{default:?}"), "{name}");
        }
        let unknown = [("no_such_setting".to_owned(), "1".to_owned())];
        assert!(apply_tune(&mut default.clone(), &unknown).is_err());
    }

    /// The memo and the key cache give ed25519's own answer, the first time and every time after:
    /// for a valid signature, a changed message, another key, and bytes that are not a key.
    #[test]
    fn memoized_checks_answer_as_ed25519_does() {
        let signer = Identity::from_secret_bytes(&[3; 32]);
        let other = Identity::from_secret_bytes(&[4; 32]);
        let signature = signer.sign(b"hello");
        let cases: [(&[u8; 32], &[u8]); 4] = [
            (&signer.public_key(), b"hello"),
            (&signer.public_key(), b"hellp"),
            (&other.public_key(), b"hello"),
            (&[0xff; 32], b"hello"),
        ];
        let cases = cases.map(|(key, message)| (*key, message));
        for _ in 0..2 {
            for (key, message) in &cases {
                let expected = gossip_core::verify(key, message, &signature);
                assert_eq!(memo_verify(key, message, &signature), expected);
                assert_eq!(verify_with_cached_key(key, message, &signature), expected);
            }
        }
        assert!(memo_verify(&signer.public_key(), b"hello", &signature));
        assert!(!memo_verify(&signer.public_key(), b"hellp", &signature));
    }

    /// A signature the memo was told of answers true, as ed25519 would; the same signature over
    /// other bytes, under another key, or changed misses the memo and is refused as ed25519 refuses it.
    #[test]
    fn signatures_told_at_signing_answer_as_ed25519_does() {
        let signer = Identity::from_secret_bytes(&[5; 32]);
        let other = Identity::from_secret_bytes(&[6; 32]);
        let message = b"a routed message, told once signed";
        let signature = signer.sign(message);
        memo_signed(&signer.public_key(), message, &signature);
        assert!(gossip_core::verify(
            &signer.public_key(),
            message,
            &signature
        ));
        assert!(memo_verify(&signer.public_key(), message, &signature));
        let mut changed = signature;
        changed[10] ^= 1;
        for (key, bytes, sig) in [
            (
                signer.public_key(),
                &b"a routed message, told once signeD"[..],
                signature,
            ),
            (other.public_key(), &message[..], signature),
            (signer.public_key(), &message[..], changed),
        ] {
            assert!(!gossip_core::verify(&key, bytes, &sig));
            assert!(!memo_verify(&key, bytes, &sig));
        }
    }
}
