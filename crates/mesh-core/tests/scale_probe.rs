//! Not a test of behaviour: prints routing and lookup figures for a larger mesh (run with
//! `PROBE_N=1000 cargo test --release -p mesh-core --test scale_probe -- --ignored --nocapture`).

#![allow(clippy::unwrap_used)]

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::Net;
use mesh_core::{Config, Event, Instant, QueryId};

fn pct<T: Copy + Default + Ord>(v: &mut [T], q: f64) -> T {
    v.sort();
    v.get(((v.len().max(1) as f64 - 1.0) * q) as usize)
        .copied()
        .unwrap_or_default()
}

fn measure(net: &mut Net, label: &str, count: usize) {
    let n = net.nodes.len();
    let live: Vec<usize> = (0..n).filter(|i| !net.dead.contains(i)).collect();
    net.events.clear();
    net.event_times.clear();
    let mut starts: BTreeMap<(usize, QueryId), (Instant, mesh_core::NodeId)> = BTreeMap::new();
    let mut sent = 0;
    for k in 0..count {
        let a = live[(k * 7919 + 3) % live.len()];
        let b = live[(k * 104_729 + 13) % live.len()];
        if a == b {
            continue;
        }
        let target = net.ids[b];
        let q = net.do_with(a, |x, now| x.find_node(now, target));
        starts.insert((a, q), (net.now, target));
        if !net.nodes[a].links().contains(&target) {
            net.do_with(a, |x, now| x.send(now, target, b"x".to_vec()).unwrap());
            sent += 1;
        }
        net.run_for(Duration::from_millis(20));
    }
    net.run_for(Duration::from_secs(30));
    let (mut rounds, mut times, mut hops) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ok, mut total, mut failed) = (0, 0, 0);
    for ((i, e), t) in net.events.iter().zip(&net.event_times) {
        match e {
            Event::LookupFinished {
                id,
                peers,
                rounds: r,
                ..
            } => {
                if let Some((t0, target)) = starts.get(&(*i, *id)) {
                    total += 1;
                    if peers.first() == Some(target) {
                        ok += 1;
                    }
                    rounds.push(*r);
                    times.push(t.saturating_duration_since(*t0).as_millis() as u64);
                }
            }
            Event::Message {
                topic: None,
                hops: h,
                ..
            } => hops.push(*h),
            Event::DirectFailed { .. } => failed += 1,
            _ => {}
        }
    }
    println!(
        "[{label}] lookups {ok}/{total} rounds p50 {} p99 {} time p50 {} ms p99 {} ms | direct {}/{sent} failed {failed} hops p50 {} p99 {} max {}",
        pct(&mut rounds, 0.5),
        pct(&mut rounds, 0.99),
        pct(&mut times, 0.5),
        pct(&mut times, 0.99),
        hops.len(),
        pct(&mut hops, 0.5),
        pct(&mut hops, 0.99),
        pct(&mut hops, 1.0)
    );
}

fn totals(net: &Net) {
    let s: Vec<_> = net.nodes.iter().map(|x| x.stats().clone()).collect();
    let sum = |f: &dyn Fn(&mesh_core::Stats) -> u64| s.iter().map(f).sum::<u64>();
    println!(
        "server_fallbacks {} backtracked {} forwarded {} evictions {} rejections {} link_failures {} links_up {} probes_answered {} no_route {}",
        sum(&|x| x.server_fallbacks),
        sum(&|x| x.routed_backtracked),
        sum(&|x| x.routed_forwarded),
        sum(&|x| x.evictions),
        sum(&|x| x.rejections),
        sum(&|x| x.link_failures),
        sum(&|x| x.links_up),
        sum(&|x| x.probes_answered),
        sum(&|x| x.dropped_no_route)
    );
}

#[test]
#[ignore = "prints figures; slow in debug builds"]
fn scale_probe() {
    let n: usize = std::env::var("PROBE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let config = Config::default();
    let mut net = Net::new(n, &config);
    for i in 0..n {
        net.join(i);
        net.run_for(Duration::from_millis(20));
    }
    net.run_for(Duration::from_secs(60));
    let degrees: Vec<usize> = net.nodes.iter().map(|x| x.links().len()).collect();
    println!(
        "n {n} components {} degree min {} max {} mean {:.2}",
        net.components(),
        degrees.iter().min().unwrap(),
        degrees.iter().max().unwrap(),
        degrees.iter().sum::<usize>() as f64 / n as f64
    );
    totals(&net);
    measure(&mut net, "stable", 200);
    totals(&net);
    for i in (0..n).step_by(10) {
        net.crash(i);
    }
    measure(&mut net, "just crashed 10%", 200);
    net.run_for(Duration::from_secs(30));
    measure(&mut net, "30 s after crash", 200);
    println!("components {}", net.components());
    totals(&net);
}
