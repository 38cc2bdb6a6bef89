//! The report's SVG plots, drawn with plotters' SVG backend: throughput
//! against connections, the lag's cumulative distribution, and query latency
//! against the number of tickets for the read models and the naive design.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::report::Report;
use crate::stats::median;

const SIZE: (u32, u32) = (720, 420);

/// A labelled line of (x, y) points in one colour.
type Series<'a> = (&'a str, &'a Vec<(f64, f64)>, RGBColor);

/// Draws every plot the report has data for into `folder`; returns the file
/// names written.
pub fn draw_all(report: &Report, folder: &Path) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    if !report.commands.is_empty() {
        throughput(report, &folder.join("throughput.svg"))?;
        written.push("throughput.svg".to_owned());
    }
    if let Some(lag) = &report.lag
        && lag.lag.count > 0
    {
        lag_cdf(&lag.lag_cdf, &folder.join("lag.svg"))?;
        written.push("lag.svg".to_owned());
    }
    if !report.reads.is_empty() {
        queries(report, &folder.join("queries.svg"))?;
        written.push("queries.svg".to_owned());
    }
    Ok(written)
}

fn plot_error<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow!("drawing a plot: {error:?}")
}

fn throughput(report: &Report, file: &Path) -> anyhow::Result<()> {
    let points: Vec<(f64, f64)> = report
        .commands
        .iter()
        .map(|l| (l.concurrency as f64, l.commands_per_second))
        .collect();
    let top = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let right = points.iter().map(|p| p.0).fold(2.0, f64::max) * 1.5;
    let root = SVGBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Commands/s against connections (closed loop)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0.8f64..right).log_scale(), 0f64..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc("commands/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2)))
        .map_err(plot_error)?
        .label("ticketd")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(points.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(
            vec![(0.8, 20_000.0), (right, 20_000.0)],
            RED.mix(0.5),
        ))
        .map_err(plot_error)?
        .label("target at 64 connections")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.mix(0.5)));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

fn lag_cdf(cdf: &[(f64, f64)], file: &Path) -> anyhow::Result<()> {
    // Up to the 99.9th percentile: the tail's last few points would squash
    // the rest into the left edge.
    let cut = cdf
        .iter()
        .find(|p| p.1 >= 0.999)
        .map_or(1.0, |p| p.0)
        .max(0.1);
    let right = cut.max(20.0) * 1.1;
    let root = SVGBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Projection lag: write acknowledged → visible in every view",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..right, 0f64..1.0)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("lag (ms)")
        .y_desc("fraction of writes")
        .draw()
        .map_err(plot_error)?;
    let points: Vec<(f64, f64)> = cdf.iter().copied().filter(|p| p.0 <= right).collect();
    chart
        .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))
        .map_err(plot_error)?
        .label("lag CDF")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            vec![(20.0, 0.0), (20.0, 1.0)],
            RED.mix(0.5),
        ))
        .map_err(plot_error)?
        .label("target: p95 ≤ 20 ms")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.mix(0.5)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

fn queries(report: &Report, file: &Path) -> anyhow::Result<()> {
    let ours_list: Vec<(f64, f64)> = report
        .reads
        .iter()
        .filter_map(|r| {
            let p50s: Vec<f64> = r.lists().map(|s| s.server.p50_ms).collect();
            Some((r.tickets as f64, median(&p50s)?))
        })
        .collect();
    let ours_dashboard: Vec<(f64, f64)> = report
        .reads
        .iter()
        .filter_map(|r| Some((r.tickets as f64, r.shape("dashboard")?.server.p50_ms)))
        .collect();
    let naive_list: Vec<(f64, f64)> = report
        .naive
        .iter()
        .filter_map(|n| {
            let p50s: Vec<f64> = n
                .shapes
                .iter()
                .filter(|s| s.name.starts_with("list "))
                .map(|s| s.latency.p50_ms)
                .collect();
            Some((n.tickets as f64, median(&p50s)?))
        })
        .collect();
    let naive_dashboard: Vec<(f64, f64)> = report
        .naive
        .iter()
        .filter_map(|n| Some((n.tickets as f64, n.shape("dashboard")?.latency.p50_ms)))
        .collect();
    let all = [&ours_list, &ours_dashboard, &naive_list, &naive_dashboard];
    let values = all.iter().flat_map(|s| s.iter());
    let (mut low_n, mut high_n, mut low_ms, mut high_ms) = (f64::MAX, 1.0f64, f64::MAX, 0.001f64);
    for &(n, ms) in values {
        low_n = low_n.min(n);
        high_n = high_n.max(n);
        low_ms = low_ms.min(ms.max(0.001));
        high_ms = high_ms.max(ms);
    }
    let root = SVGBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Query p50 against tickets (server-side; naive in-process)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (low_n.min(high_n) * 0.7..high_n * 1.4).log_scale(),
            (low_ms.min(high_ms) * 0.5..high_ms * 2.0).log_scale(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("tickets")
        .y_desc("p50 (ms)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(plot_error)?;
    let series: [Series<'_>; 4] = [
        ("read model: list page (median shape)", &ours_list, BLUE),
        ("read model: dashboard", &ours_dashboard, GREEN),
        ("naive: list page (median shape)", &naive_list, RED),
        ("naive: dashboard", &naive_dashboard, MAGENTA),
    ];
    for (label, points, color) in series {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}
