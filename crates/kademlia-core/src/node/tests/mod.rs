//! Unit tests of the node, by part, over shared fixtures (this module): ids, times, a small config,
//! drains of outputs, canned responses.

use super::*;
use core::time::Duration;

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn id(n: u32) -> NodeId {
    NodeId::hash(n.to_be_bytes())
}

fn small() -> Config {
    Config {
        k: 2,
        alpha: 1,
        max_lookup_candidates: 8,
        ..Config::default()
    }
}

/// Drains `node`: the messages it sent (decoded) and its events.
fn drain(node: &mut Node) -> (Vec<(NodeId, Message)>, Vec<Event>) {
    let limits = Limits::from_config(node.config());
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    while let Some(o) = node.poll_output() {
        match o {
            Output::Transmit { to, bytes } => {
                sent.push((to, Message::decode(&bytes, &limits).expect("valid")))
            }
            Output::Event(e) => events.push(e),
        }
    }
    (sent, events)
}

/// A node on `config` with the links to `peers` up, its outputs so far drained.
fn linked(config: Config, peers: &[u32]) -> Node {
    let mut node = Node::new(id(0), config, 1);
    for n in peers {
        node.handle_peer_up(t(0), id(*n));
    }
    let _ = drain(&mut node);
    node
}

/// A node on [`small`] that knows only `id(1)` and looks `target` up: the node, the query and the
/// request it sent.
fn finding(target: NodeId) -> (Node, QueryId, Vec<(NodeId, Message)>) {
    let mut node = Node::new(id(0), small(), 1);
    node.add_contact(t(0), id(1));
    let q = node.find_node(t(0), target);
    let (sent, _) = drain(&mut node);
    (node, q, sent)
}

fn respond(node: &mut Node, now: Instant, from: NodeId, id: u64, body: Response) {
    node.handle_message(now, from, &Message::Response { id, body }.encode());
}

fn request_id(m: &Message) -> u64 {
    match m {
        Message::Request { id, .. } => *id,
        Message::Response { .. } => panic!("expected a request, got {m:?}"),
    }
}

fn finished(events: &[Event]) -> Option<(QueryResult, QueryEnd, u32, u32)> {
    events.iter().find_map(|e| match e {
        Event::QueryFinished {
            result,
            end,
            rounds,
            requests,
            ..
        } => Some((result.clone(), *end, *rounds, *requests)),
        _ => None,
    })
}

mod lookup;
mod records;
mod rpc;
mod table;

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut node = Node::new(id(0), small(), seed);
        node.add_contact(t(0), id(1));
        let _ = node.find_node(t(0), id(9));
        drain(&mut node).0
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6), "request ids come from the seed");
}
