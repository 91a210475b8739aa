//! `cargo xtask sim-scale`: how the simulator's cost grows with the network (issue 17).
//!
//! It runs the simulator's broadcast scenario (release build, `--json`) at each `--nodes` size, one run
//! at a time: peak memory is a per-process figure, and a second run beside it would share the two
//! cores and inflate wall time. Reports of earlier runs can be added with `--from FILE` (the
//! simulator's `--json` lines, one per line), so that a run of hours, like the 100,000-node one, need
//! not be repeated to redraw the table. It prints one row per run (events, wall and CPU seconds, peak
//! memory, microseconds per event, and the broadcast's own figures) and writes a log-log plot of wall
//! time, CPU time and peak memory against nodes as an SVG (`--svg`, docs/sim-scale.svg by default).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use plotters::prelude::*;
use serde_json::Value;

use crate::util::{build_sim, last_json, output, root};

/// Flags of `cargo xtask sim-scale`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Sizes to run, comma-separated, e.g. `1000,10000` (none: only the `--from` reports).
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<usize>,
    /// The seed of every run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Files of earlier reports (the simulator's `--json` lines) to add to the table and the plot.
    #[arg(long)]
    from: Vec<PathBuf>,
    /// Run sharded over N shards (the simulator's `--shards`; 0: sequential; 8 suits two cores).
    /// Every N > 0 gives the same runs, which differ from the sequential ones.
    #[arg(long, default_value_t = 0, value_name = "N")]
    shards: usize,
    /// Where to write the plot, relative to the workspace root.
    #[arg(long, default_value = "docs/sim-scale.svg")]
    svg: PathBuf,
}

/// One run's figures, read from its JSON report.
struct Row {
    nodes: f64,
    events: Option<f64>,
    wall_s: f64,
    cpu_s: Option<f64>,
    rss_mb: Option<f64>,
    report: Value,
}

impl Row {
    fn from_report(report: Value) -> Result<Row, String> {
        let number = |key: &str| report.get(key).and_then(Value::as_f64);
        if report.get("scenario").and_then(Value::as_str) != Some("broadcast") {
            return Err(format!("not a broadcast report: {report}"));
        }
        Ok(Row {
            nodes: number("nodes").ok_or("a report without `nodes`")?,
            events: number("events"),
            wall_s: number("wall_s").ok_or("a report without `wall_s`")?,
            cpu_s: number("cpu_s"),
            rss_mb: number("peak_rss_mb"),
            report,
        })
    }
}

/// Entry point of the `sim-scale` task.
pub fn run_task(args: Args) -> Result<(), String> {
    let mut rows = Vec::new();
    for file in &args.from {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("sim-scale: {}: {e}", file.display()))?;
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let report: Value = serde_json::from_str(line)
                .map_err(|e| format!("sim-scale: {}: {e}", file.display()))?;
            rows.push(Row::from_report(report)?);
        }
    }
    if !args.nodes.is_empty() {
        let sim = build_sim()?;
        for nodes in &args.nodes {
            eprintln!("sim-scale: {nodes} nodes (progress below)");
            let mut cmd = Command::new(&sim);
            cmd.args(["--scenario", "broadcast", "--nodes", &nodes.to_string()])
                .args(["--seed", &args.seed.to_string(), "--json", "--progress"])
                .args(["--shards", &args.shards.to_string()])
                .stderr(Stdio::inherit());
            let out = output(&format!("sim at {nodes} nodes"), &mut cmd)?;
            rows.push(Row::from_report(last_json(&out)?)?);
        }
    }
    if rows.is_empty() {
        return Err("sim-scale: no runs (give --nodes or --from)".into());
    }
    rows.sort_by(|a, b| a.nodes.total_cmp(&b.nodes));
    print_table(&rows);
    let svg = root().join(&args.svg);
    plot(&rows, &svg).map_err(|e| format!("sim-scale: drawing {}: {e}", svg.display()))?;
    println!("plot: {}", svg.display());
    Ok(())
}

fn print_table(rows: &[Row]) {
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
    println!(
        "| nodes | engine | events | wall s | CPU s | peak RSS MiB | µs / event (CPU) | delivery | RMR | ldh | p50 / p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let number = |key: &str| row.report.get(key).and_then(Value::as_f64);
        let per_event = row.cpu_s.zip(row.events).map(|(c, e)| c * 1e6 / e);
        println!(
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} / {} |",
            row.nodes,
            row.report
                .get("engine")
                .and_then(Value::as_str)
                .unwrap_or("sequential"),
            opt(row.events, 0),
            row.wall_s,
            opt(row.cpu_s, 1),
            opt(row.rss_mb, 0),
            opt(per_event, 1),
            opt(number("delivery_ratio"), 4),
            opt(number("rmr"), 3),
            opt(number("ldh"), 2),
            opt(number("latency_ms_p50"), 0),
            opt(number("latency_ms_p99"), 0),
        );
    }
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A named series of (nodes, value) points and its colour.
type Line<'a> = (&'a str, &'a [(f64, f64)], RGBColor);

/// Two log-log panels: seconds (wall, CPU) and peak memory (MiB), against nodes.
fn plot(rows: &[Row], path: &std::path::Path) -> DrawResult {
    let area = SVGBackend::new(path, (960, 420)).into_drawing_area();
    area.fill(&WHITE)?;
    let (left, right) = area.split_horizontally(480);
    let x_max = rows.iter().map(|r| r.nodes).fold(1.0, f64::max) * 2.0;
    let x_min = rows.iter().map(|r| r.nodes).fold(f64::MAX, f64::min) / 2.0;
    let series = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| f(r).map(|v| (r.nodes, v)))
            .collect()
    };
    let wall = series(&|r| Some(r.wall_s));
    let cpu = series(&|r| r.cpu_s);
    let rss = series(&|r| r.rss_mb);
    let span = |points: &[&[(f64, f64)]]| {
        let values = points.iter().flat_map(|p| p.iter().map(|(_, v)| *v));
        let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        (lo.min(hi) / 2.0, hi * 2.0)
    };
    let panels = [
        (
            &left,
            "Broadcast scenario: time",
            "seconds",
            Vec::<Line<'_>>::from([("wall", &wall[..], RED), ("CPU", &cpu[..], BLUE)]),
        ),
        (
            &right,
            "Broadcast scenario: peak memory",
            "MiB (peak RSS)",
            vec![("peak RSS", &rss[..], GREEN)],
        ),
    ];
    for (panel, caption, unit, lines) in panels {
        let all: Vec<&[(f64, f64)]> = lines.iter().map(|(_, p, _)| *p).collect();
        let (y_min, y_max) = span(&all);
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_labels(4)
            .y_labels(6)
            .x_desc("nodes")
            .y_desc(unit)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (name, points, color) in lines {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()?;
    }
    area.present()?;
    Ok(())
}
