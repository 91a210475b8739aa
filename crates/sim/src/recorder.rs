//! What the scenarios measure, recorded as events happen: broadcast deliveries, lookups, direct
//! messages. Application payloads carry a small tag (kind and index) so that a delivery names its message.

use kademlia_core::{Instant, NodeId};

const TAG_BROADCAST: u8 = b'B';
const TAG_DIRECT: u8 = b'D';
/// Bytes of a tag: kind and a little-endian u32 index.
pub const TAG_LEN: usize = 5;

/// A tagged payload of `len` bytes (at least [`TAG_LEN`]).
pub fn payload(broadcast: bool, index: u32, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len.max(TAG_LEN)];
    data[0] = if broadcast { TAG_BROADCAST } else { TAG_DIRECT };
    data[1..TAG_LEN].copy_from_slice(&index.to_le_bytes());
    data
}

/// The tag of a payload: (broadcast?, index).
pub fn parse(data: &[u8]) -> Option<(bool, u32)> {
    let kind = match *data.first()? {
        TAG_BROADCAST => true,
        TAG_DIRECT => false,
        _ => return None,
    };
    let index = u32::from_le_bytes(data.get(1..TAG_LEN)?.try_into().ok()?);
    Some((kind, index))
}

/// One broadcast.
#[derive(Debug, Clone)]
pub struct BroadcastRecord {
    /// Publishing slot.
    pub origin: u32,
    /// When it was published.
    pub published: Instant,
    /// Slots that delivered it (bit set).
    pub delivered: Vec<u64>,
    /// (slot, latency µs, hops) of each first delivery.
    pub deliveries: Vec<(u32, u64, u32)>,
    /// Deliveries of a message a slot had already delivered.
    pub duplicates: u32,
}

impl BroadcastRecord {
    /// Whether `slot` delivered it.
    pub fn has(&self, slot: u32) -> bool {
        self.delivered
            .get(slot as usize / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }
}

/// One lookup.
#[derive(Debug, Clone)]
pub struct LookupRecord {
    /// Searching slot.
    pub from: u32,
    /// The id looked up.
    pub target: NodeId,
    /// The query id the node returned.
    pub query: u64,
    /// Start.
    pub started: Instant,
    /// End, with rounds and whether the lookup found the target.
    pub finished: Option<(Instant, u32, bool)>,
    /// Link traversals on the lookup's critical path, when the protocol reports them (`find_node`).
    pub links: Option<u32>,
}

/// One direct message.
#[derive(Debug, Clone)]
pub struct DirectRecord {
    /// Sending slot.
    pub from: u32,
    /// Addressee slot.
    pub to: u32,
    /// The id `send` returned (`None`: refused at once).
    pub id: Option<u64>,
    /// When it was sent.
    pub sent: Instant,
    /// Hops and time of delivery.
    pub delivered: Option<(u32, Instant)>,
    /// The sender was told it failed.
    pub failed: bool,
}

/// The name of DHT record `index`.
pub fn dht_name(index: u32) -> Vec<u8> {
    format!("rec-{index}").into_bytes()
}

/// The value DHT record `index` is put with (a small one: 16 bytes or so).
pub fn dht_value(index: u32) -> Vec<u8> {
    format!("value of rec-{index}").into_bytes()
}

/// How a DHT put ended.
#[derive(Debug, Clone)]
pub struct PutResult {
    /// When.
    pub at: Instant,
    /// Nodes that said they store the record.
    pub stored: u32,
    /// Nodes asked to store it.
    pub asked: u32,
    /// The last refusal heard, if any.
    pub refused: Option<kademlia_core::StoreError>,
}

/// One DHT put.
#[derive(Debug, Clone)]
pub struct PutRecord {
    /// Publishing slot.
    pub from: u32,
    /// The record's index ([`dht_name`], [`dht_value`]).
    pub index: u32,
    /// The id `dht_put` returned (`None`: refused at once).
    pub query: Option<u64>,
    /// Start.
    pub started: Instant,
    /// End.
    pub finished: Option<PutResult>,
}

/// How a DHT get ended.
#[derive(Debug, Clone)]
pub struct GetResult {
    /// When.
    pub at: Instant,
    /// The value found, if any.
    pub value: Option<Vec<u8>>,
    /// Whether any node answered.
    pub answered: bool,
    /// Link traversals of the request that found it (of the last answer when not found).
    pub hops: u32,
    /// Rounds of requests.
    pub rounds: u32,
}

/// One DHT get.
#[derive(Debug, Clone)]
pub struct GetRecord {
    /// Searching slot.
    pub from: u32,
    /// The index of the record looked up.
    pub index: u32,
    /// The id `dht_get` returned (`None`: refused at once).
    pub query: Option<u64>,
    /// Start.
    pub started: Instant,
    /// End.
    pub finished: Option<GetResult>,
}

impl GetRecord {
    /// Whether it found the record with the value it was put with.
    pub fn found(&self) -> bool {
        self.finished
            .as_ref()
            .and_then(|f| f.value.as_ref())
            .is_some_and(|v| *v == dht_value(self.index))
    }
}

/// Everything measured during a run.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    /// Broadcasts by index.
    pub broadcasts: Vec<BroadcastRecord>,
    /// Kademlia iterative lookups (`dht_find_node`), by index.
    pub lookups: Vec<LookupRecord>,
    /// Mesh-routed probe lookups (`find_node`), by index.
    pub probes: Vec<LookupRecord>,
    /// Direct messages by index.
    pub directs: Vec<DirectRecord>,
    /// DHT puts, in the order started.
    pub puts: Vec<PutRecord>,
    /// DHT gets, in the order started.
    pub gets: Vec<GetRecord>,
    /// Deliveries whose tag named no known message.
    pub unknown: u64,
}

impl Recorder {
    /// A message was delivered at `slot`.
    pub fn on_message(&mut self, now: Instant, slot: u32, data: &[u8], hops: u32) {
        match parse(data) {
            Some((true, index)) => {
                let Some(rec) = self.broadcasts.get_mut(index as usize) else {
                    self.unknown += 1;
                    return;
                };
                let word = slot as usize / 64;
                if rec.delivered.len() <= word {
                    rec.delivered.resize(word + 1, 0);
                }
                let bit = 1u64 << (slot % 64);
                if rec.delivered[word] & bit != 0 {
                    rec.duplicates += 1;
                    return;
                }
                rec.delivered[word] |= bit;
                let latency = now.saturating_duration_since(rec.published).as_micros();
                rec.deliveries
                    .push((slot, u64::try_from(latency).unwrap_or(u64::MAX), hops));
            }
            Some((false, index)) => match self.directs.get_mut(index as usize) {
                Some(rec) if rec.to == slot && rec.delivered.is_none() => {
                    rec.delivered = Some((hops, now));
                }
                _ => self.unknown += 1,
            },
            None => self.unknown += 1,
        }
    }

    /// A Kademlia lookup finished at `slot`; it succeeded when the target is among the closest found
    /// (kademlia-core's rule).
    pub fn on_dht_lookup(
        &mut self,
        now: Instant,
        slot: u32,
        query: u64,
        closest: &[NodeId],
        rounds: u32,
    ) {
        if let Some(rec) = find_open(&mut self.lookups, slot, query) {
            let found = closest.contains(&rec.target);
            rec.finished = Some((now, rounds, found));
        }
    }

    /// A probe lookup finished at `slot`; it succeeded when the target is the closest peer found
    /// (mesh-core's rule).
    pub fn on_probe(
        &mut self,
        now: Instant,
        slot: u32,
        query: u64,
        peers: &[NodeId],
        rounds: u32,
        links: u32,
    ) {
        if let Some(rec) = find_open(&mut self.probes, slot, query) {
            let found = peers.first() == Some(&rec.target);
            rec.finished = Some((now, rounds, found));
            rec.links = Some(links);
        }
    }

    /// A DHT put of `slot` ended.
    pub fn on_put(&mut self, slot: u32, query: u64, result: PutResult) {
        if let Some(rec) = self
            .puts
            .iter_mut()
            .rev()
            .find(|r| r.from == slot && r.query == Some(query) && r.finished.is_none())
        {
            rec.finished = Some(result);
        }
    }

    /// A DHT get of `slot` ended.
    pub fn on_get(&mut self, slot: u32, query: u64, result: GetResult) {
        if let Some(rec) = self
            .gets
            .iter_mut()
            .rev()
            .find(|r| r.from == slot && r.query == Some(query) && r.finished.is_none())
        {
            rec.finished = Some(result);
        }
    }

    /// A direct message failed at `slot`.
    pub fn on_direct_failed(&mut self, slot: u32, id: u64) {
        if let Some(rec) = self
            .directs
            .iter_mut()
            .rev()
            .find(|r| r.from == slot && r.id == Some(id))
        {
            rec.failed = true;
        }
    }
}

/// The unfinished lookup `query` of `slot`; few are in flight at once, so search from the newest.
fn find_open(records: &mut [LookupRecord], slot: u32, query: u64) -> Option<&mut LookupRecord> {
    records
        .iter_mut()
        .rev()
        .find(|r| r.from == slot && r.query == query && r.finished.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        assert_eq!(parse(&payload(true, 77, 64)), Some((true, 77)));
        assert_eq!(parse(&payload(false, 3, 0)), Some((false, 3)));
        assert_eq!(parse(b"x"), None);
        assert_eq!(parse(b"B12"), None);
    }
}
