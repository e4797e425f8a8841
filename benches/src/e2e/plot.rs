//! `e2e plot`: SVG charts of throughput and latency against the number of clients, from the
//! results files `e2e run` writes.
//!
//! One pair of charts per (scenario, cluster size, value size), with one line per (system,
//! transport), so kvd over TCP and QUIC and etcd share a chart when all were measured. Runs
//! repeated with the same parameters are reduced to their median. Failover runs (one point
//! each, about gaps rather than throughput) and runs without a successful operation are left
//! out. SVG needs no fonts at render time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use plotters::coord::combinators::{LogCoord, WithKeyPoints};
use plotters::prelude::*;
use serde::Deserialize;

use super::Error;

/// Options of `e2e plot`.
#[derive(Args, Clone, Debug)]
pub struct PlotArgs {
    /// Results files written by `e2e run` (JSON lines).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Directory the SVG files are written to.
    #[arg(long = "out-dir", default_value = "docs/bench")]
    pub out_dir: PathBuf,
}

/// The fields of a results line a chart needs.
#[derive(Clone, Debug, Deserialize)]
struct Run {
    system: String,
    nodes: u16,
    transport: String,
    scenario: String,
    value_size: u32,
    clients: u32,
    loadgen: Figures,
}

#[derive(Clone, Debug, Deserialize)]
struct Figures {
    throughput_ops_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    ops: u64,
}

/// One client count of one line: the medians over the runs with those parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    clients: u32,
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// One line: a system and transport.
#[derive(Clone, Debug, PartialEq)]
struct Series {
    name: String,
    points: Vec<Point>,
}

/// The charts of one scenario, cluster size and value size.
#[derive(Clone, Debug, PartialEq)]
struct Chart {
    scenario: String,
    nodes: u16,
    value_size: u32,
    series: Vec<Series>,
}

impl Chart {
    fn file_stem(&self) -> String {
        format!("{}-{}n-{}B", self.scenario, self.nodes, self.value_size)
    }

    fn title(&self, what: &str) -> String {
        format!(
            "{} {}, {} nodes, {} values",
            self.scenario,
            what,
            self.nodes,
            bytes(self.value_size)
        )
    }

    /// The client counts measured, ascending: the x axis' ticks.
    fn clients(&self) -> Vec<f64> {
        let mut clients: Vec<u32> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.clients))
            .collect();
        clients.sort_unstable();
        clients.dedup();
        clients.into_iter().map(f64::from).collect()
    }

    /// The x axis: log scale over the client counts, with a tick at each.
    fn clients_axis(&self) -> WithKeyPoints<LogCoord<f64>> {
        let clients = self.clients();
        let low = clients.first().copied().unwrap_or(1.0);
        let high = clients.last().copied().unwrap_or(1.0);
        (low / 1.5..high * 1.5).log_scale().with_key_points(clients)
    }
}

fn bytes(size: u32) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// Reads every results line of `paths`; a line that is not a run (or from another tool) is
/// skipped with a warning.
fn read_runs(paths: &[PathBuf]) -> Result<Vec<Run>, Error> {
    let mut runs = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::io(format!("read {}", path.display()), source))?;
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Run>(line) {
                Ok(run) => runs.push(run),
                Err(e) => eprintln!("e2e plot: {}:{}: skipped ({e})", path.display(), number + 1),
            }
        }
    }
    Ok(runs)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// Groups runs into charts; a chart needs at least two client counts.
fn charts(runs: &[Run]) -> Vec<Chart> {
    /// Throughput, p50 and p99 of each run with the same parameters.
    type Samples = Vec<(f64, f64, f64)>;
    /// Per line name, per client count.
    type Lines = BTreeMap<String, BTreeMap<u32, Samples>>;
    let mut grouped: BTreeMap<(String, u16, u32), Lines> = BTreeMap::new();
    for run in runs {
        if run.scenario == "failover" || run.loadgen.ops == 0 {
            continue;
        }
        let name = if run.system == "kvd" {
            format!("{} {}", run.system, run.transport)
        } else {
            run.system.clone()
        };
        grouped
            .entry((run.scenario.clone(), run.nodes, run.value_size))
            .or_default()
            .entry(name)
            .or_default()
            .entry(run.clients)
            .or_default()
            .push((
                run.loadgen.throughput_ops_s,
                run.loadgen.p50_ms,
                run.loadgen.p99_ms,
            ));
    }
    grouped
        .into_iter()
        .map(|((scenario, nodes, value_size), lines)| Chart {
            scenario,
            nodes,
            value_size,
            series: lines
                .into_iter()
                .map(|(name, by_clients)| Series {
                    name,
                    points: by_clients
                        .into_iter()
                        .map(|(clients, samples)| {
                            let pick = |f: fn(&(f64, f64, f64)) -> f64| {
                                median(&mut samples.iter().map(f).collect::<Vec<_>>())
                            };
                            Point {
                                clients,
                                throughput: pick(|s| s.0),
                                p50_ms: pick(|s| s.1),
                                p99_ms: pick(|s| s.2),
                            }
                        })
                        .collect(),
                })
                .collect(),
        })
        .filter(|chart| chart.clients().len() >= 2)
        .collect()
}

/// A line's colour: the same system and transport keep theirs across charts.
fn colour(name: &str) -> RGBColor {
    match name {
        "kvd tcp" => RGBColor(31, 119, 180),
        "kvd quic" => RGBColor(44, 160, 44),
        "etcd" => RGBColor(214, 39, 40),
        _ => RGBColor(148, 103, 189),
    }
}

/// Ticks for a log axis: 1, 2 and 5 times each power of ten within `low..=high`.
fn one_two_five(low: f64, high: f64) -> Vec<f64> {
    (-3..=6)
        .flat_map(|exponent| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(exponent)))
        .filter(|tick| (low..=high).contains(tick))
        .collect()
}

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

const SIZE: (u32, u32) = (800, 500);

fn clients_label(x: &f64) -> String {
    format!("{x:.0}")
}

fn render_throughput(chart: &Chart, path: &Path) -> Result<(), Error> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let top = chart
        .series
        .iter()
        .flat_map(|s| &s.points)
        .map(|p| p.throughput)
        .fold(0.0, f64::max)
        * 1.1;
    let mut plot = ChartBuilder::on(&root)
        .caption(chart.title("throughput"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(chart.clients_axis(), 0.0..top.max(1.0))
        .map_err(plot_error)?;
    plot.configure_mesh()
        .x_desc("clients (log scale)")
        .y_desc("ops/s")
        .x_label_formatter(&clients_label)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_error)?;
    for series in &chart.series {
        let colour = colour(&series.name);
        let points: Vec<(f64, f64)> = series
            .points
            .iter()
            .map(|p| (f64::from(p.clients), p.throughput))
            .collect();
        plot.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(plot_error)?
            .label(series.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        plot.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, colour.filled())),
        )
        .map_err(plot_error)?;
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

fn render_latency(chart: &Chart, path: &Path) -> Result<(), Error> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let latencies = chart
        .series
        .iter()
        .flat_map(|s| &s.points)
        .flat_map(|p| [p.p50_ms, p.p99_ms])
        .filter(|&ms| ms > 0.0);
    let (bottom, top) = latencies.fold((f64::MAX, 0.0f64), |(lo, hi), ms| (lo.min(ms), hi.max(ms)));
    let (bottom, top) = if top > 0.0 {
        (bottom / 1.5, top * 1.5)
    } else {
        (0.01, 1.0)
    };
    let mut plot = ChartBuilder::on(&root)
        .caption(chart.title("latency"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            chart.clients_axis(),
            (bottom..top)
                .log_scale()
                .with_key_points(one_two_five(bottom, top)),
        )
        .map_err(plot_error)?;
    plot.configure_mesh()
        .x_desc("clients (log scale)")
        .y_desc("ms (log scale)")
        .x_label_formatter(&clients_label)
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(plot_error)?;
    for series in &chart.series {
        let colour = colour(&series.name);
        for (percentile, width, pick) in [
            ("p50", 1, (|p: &Point| p.p50_ms) as fn(&Point) -> f64),
            ("p99", 3, |p: &Point| p.p99_ms),
        ] {
            let points: Vec<(f64, f64)> = series
                .points
                .iter()
                .map(|p| (f64::from(p.clients), pick(p)))
                .filter(|&(_, ms)| ms > 0.0)
                .collect();
            plot.draw_series(LineSeries::new(points.clone(), colour.stroke_width(width)))
                .map_err(plot_error)?
                .label(format!("{} {percentile}", series.name))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(width))
                });
            plot.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, width + 2, colour.filled())),
            )
            .map_err(plot_error)?;
        }
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

/// Reads the results files of `args` and writes two SVG charts per (scenario, cluster size,
/// value size) into the output directory; returns the files written.
pub fn plot(args: &PlotArgs) -> Result<Vec<PathBuf>, Error> {
    let runs = read_runs(&args.inputs)?;
    let charts = charts(&runs);
    if charts.is_empty() {
        return Err(Error::Plot(format!(
            "nothing to plot in {} runs: a chart needs two client counts of one scenario",
            runs.len()
        )));
    }
    std::fs::create_dir_all(&args.out_dir)
        .map_err(|source| Error::io(format!("create {}", args.out_dir.display()), source))?;
    let mut written = Vec::new();
    for chart in &charts {
        let throughput = args
            .out_dir
            .join(format!("{}-throughput.svg", chart.file_stem()));
        render_throughput(chart, &throughput)?;
        let latency = args
            .out_dir
            .join(format!("{}-latency.svg", chart.file_stem()));
        render_latency(chart, &latency)?;
        written.extend([throughput, latency]);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(system: &str, transport: &str, scenario: &str, clients: u32, ops_s: f64) -> String {
        format!(
            r#"{{"system":"{system}","nodes":3,"transport":"{transport}","scenario":"{scenario}","value_size":256,"clients":{clients},"conns":1,"loadgen":{{"throughput_ops_s":{ops_s},"p50_ms":{p50},"p99_ms":{p99},"ops":{ops},"errors":0}}}}"#,
            p50 = f64::from(clients) / 10.0,
            p99 = f64::from(clients) / 2.0,
            ops = ops_s as u64 * 10,
        )
    }

    fn parse(lines: &[String]) -> Vec<Run> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn groups_by_scenario_and_takes_medians() {
        let runs = parse(&[
            line("kvd", "tcp", "put", 1, 500.0),
            line("kvd", "tcp", "put", 16, 3000.0),
            line("kvd", "tcp", "put", 16, 3400.0),
            line("kvd", "tcp", "put", 16, 9000.0),
            line("etcd", "http", "put", 1, 400.0),
            line("etcd", "http", "put", 16, 2400.0),
            line("kvd", "quic", "put", 1, 0.0),
            line("kvd", "tcp", "failover", 16, 3000.0),
            line("kvd", "tcp", "get", 64, 12000.0),
        ]);
        let charts = charts(&runs);
        assert_eq!(
            charts.len(),
            1,
            "failover and one-point charts are left out"
        );
        let chart = &charts[0];
        assert_eq!(chart.file_stem(), "put-3n-256B");
        let names: Vec<&str> = chart.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["etcd", "kvd tcp"], "runs without ops are left out");
        let kvd = &chart.series[1];
        assert_eq!(kvd.points.len(), 2);
        assert_eq!(kvd.points[1].clients, 16);
        assert_eq!(kvd.points[1].throughput, 3400.0);
        assert_eq!(kvd.points[1].p99_ms, 8.0);
    }

    #[test]
    fn log_ticks() {
        assert_eq!(one_two_five(0.7, 30.0), [1.0, 2.0, 5.0, 10.0, 20.0]);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn writes_svg_charts() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("runs.jsonl");
        let lines = [
            line("kvd", "tcp", "put", 1, 500.0),
            line("kvd", "tcp", "put", 16, 3300.0),
            "not json".to_string(),
            line("etcd", "http", "put", 16, 2400.0),
        ];
        std::fs::write(&input, lines.join("\n")).unwrap();
        let args = PlotArgs {
            inputs: vec![input],
            out_dir: dir.path().join("plots"),
        };
        let written = plot(&args).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["put-3n-256B-throughput.svg", "put-3n-256B-latency.svg"]
        );
        let svg = std::fs::read_to_string(&written[0]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("kvd tcp") && svg.contains("etcd"));
    }
}
