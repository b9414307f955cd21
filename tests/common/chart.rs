//! The transport bench's charts (plotters), drawn from [`super::harness::Row`]s, each as SVG
//! and PNG:
//!
//! - `NAME-vs-rsync.{svg,png}`: one panel per link, grouped bars per workload, one bar per
//!   contender: its time ÷ rsync's time on the same link and workload (below 1 = faster).
//! - `NAME-link-use.{svg,png}`: the fresh workloads on the emulated links, one bar per
//!   contender: the busier direction's share of the link rate over the whole run.
//!
//! Owns the layout only; the numbers are the harness's. Text is laid out with DejaVu Sans,
//! read at run time (Debian's `fonts-dejavu-core`), so the PNG needs no system font library.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::harness::Row;

/// Where the font is looked for.
const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// One panel: bars in groups.
struct Panel {
    title: String,
    /// Group labels along x.
    groups: Vec<String>,
    /// One value per group per series (`None`: not measured).
    series: Vec<(String, Vec<Option<f64>>)>,
    y_desc: &'static str,
    /// A horizontal reference line (1 × rsync, 100 % of the link).
    reference: f64,
}

/// The colour of the `i`th contender.
fn colour(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(90, 90, 90),
        RGBColor(31, 119, 180),
        RGBColor(23, 190, 207),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    C[i % C.len()]
}

/// Values in first-seen order, each once.
fn distinct<T: PartialEq>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut v = Vec::new();
    for x in values {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v
}

/// The short name of a workload key along x.
fn short(key: &str) -> &str {
    match key {
        "small" => "small files",
        "big" => "big fresh",
        "scattered" => "scattered",
        "insert" => "insert",
        "unchanged" => "unchanged",
        other => other,
    }
}

/// One series per contender (not the bare login), one value per group.
fn series<G>(
    rows: &[Row],
    groups: &[G],
    value: impl Fn(&str, &G) -> Option<f64>,
) -> Vec<(String, Vec<Option<f64>>)> {
    distinct(rows.iter().map(|r| r.contender.as_str()))
        .into_iter()
        .filter(|c| !c.starts_with('('))
        .map(|c| (c.to_owned(), groups.iter().map(|g| value(c, g)).collect()))
        .collect()
}

fn vs_rsync_panels(rows: &[Row]) -> Vec<Panel> {
    distinct(rows.iter().map(|r| r.profile.as_str()))
        .into_iter()
        .map(|profile| {
            let here: Vec<&Row> = rows.iter().filter(|r| r.profile == profile).collect();
            let groups = distinct(here.iter().map(|r| r.workload_key.as_str()));
            let series = series(rows, &groups, |c, w| {
                here.iter()
                    .find(|r| r.contender == c && r.workload_key == *w)
                    .map(|r| r.vs_rsync)
                    .filter(|v| v.is_finite())
            });
            Panel {
                title: profile.to_owned(),
                groups: groups.iter().map(|w| short(w).to_owned()).collect(),
                series,
                y_desc: "time ÷ rsync's",
                reference: 1.0,
            }
        })
        .collect()
}

fn link_use_panel(rows: &[Row]) -> Option<Panel> {
    let fresh: Vec<&Row> = rows
        .iter()
        .filter(|r| r.fresh() && r.link_use().is_some())
        .collect();
    if fresh.is_empty() {
        return None;
    }
    let groups = distinct(
        fresh
            .iter()
            .map(|r| (r.profile.as_str(), r.workload_key.as_str())),
    );
    let series = series(rows, &groups, |c, (p, w)| {
        fresh
            .iter()
            .find(|r| r.contender == c && r.profile == *p && r.workload_key == *w)
            .and_then(|r| r.link_use())
            .map(|u| 100.0 * u)
    });
    Some(Panel {
        title: "fresh data: share of the link rate over the whole run".into(),
        groups: groups
            .iter()
            .map(|(p, w)| {
                let link = p.split(|c: char| c.is_ascii_digit()).next().unwrap_or(p);
                format!("{} · {}", link.trim(), short(w))
            })
            .collect(),
        series,
        y_desc: "% of link rate",
        reference: 100.0,
    })
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let n = p.groups.len().max(1);
    let top = p
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(p.reference, |a, &b| a.max(b))
        * 1.6;
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)?;
    let groups = p.groups.clone();
    let label = move |x: &f64| {
        let i = x.floor() as usize;
        if (x - x.floor() - 0.5).abs() < 1e-6 && i < groups.len() {
            groups[i].clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&label)
        .y_desc(p.y_desc)
        .label_style(("sans-serif", 14))
        .draw()?;
    let k = p.series.len().max(1) as f64;
    let width = 0.8 / k;
    for (j, (name, values)) in p.series.iter().enumerate() {
        let c = colour(j);
        let bars = values.iter().enumerate().filter_map(|(i, v)| {
            let v = (*v)?;
            let x0 = i as f64 + 0.1 + j as f64 * width;
            Some(Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.9, v)],
                c.filled(),
            ))
        });
        chart
            .draw_series(bars)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    let r = p.reference;
    chart.draw_series(LineSeries::new(
        [(0.0, r), (n as f64, r)],
        BLACK.stroke_width(1),
    ))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

fn draw_all<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, panels: &[Panel]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let areas = root.split_evenly((panels.len(), 1));
    for (area, p) in areas.iter().zip(panels) {
        draw_panel(area, p)?;
    }
    root.present()?;
    Ok(())
}

/// Register DejaVu Sans as plotters' `sans-serif` (once per process).
fn font() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = FONTS
            .iter()
            .find(|p| Path::new(p).exists())
            .ok_or("the chart needs DejaVu Sans (apt-get install fonts-dejavu-core)".to_owned())?;
        let bytes: &'static [u8] = Vec::leak(std::fs::read(path).map_err(|e| e.to_string())?);
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a font plotters can read"))
    })
    .clone()
}

/// Write both charts as SVG and PNG into `dir`; the files written.
pub fn write(dir: &Path, name: &str, rows: &[Row]) -> Result<Vec<PathBuf>, String> {
    font()?;
    let mut written = Vec::new();
    let vs = vs_rsync_panels(rows);
    let mut charts = vec![("vs-rsync", vs)];
    if let Some(p) = link_use_panel(rows) {
        charts.push(("link-use", vec![p]));
    }
    for (suffix, panels) in charts {
        if panels.is_empty() {
            continue;
        }
        let size = (1200, 380 * panels.len() as u32 + 20);
        let svg = dir.join(format!("{name}-{suffix}.svg"));
        draw_all(SVGBackend::new(&svg, size).into_drawing_area(), &panels)
            .map_err(|e| format!("{}: {e}", svg.display()))?;
        let png = dir.join(format!("{name}-{suffix}.png"));
        draw_all(BitMapBackend::new(&png, size).into_drawing_area(), &panels)
            .map_err(|e| format!("{}: {e}", png.display()))?;
        written.extend([svg, png]);
    }
    Ok(written)
}
