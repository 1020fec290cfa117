//! The report's SVG plots: the latency CDF per configuration, and lines
//! of one value against another (throughput against connections, CPU per
//! call against policy-set size and result size).

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use crate::run::Row;

pub fn cdf(path: &Path, rows: &[Row]) -> Result<()> {
    let max = rows
        .iter()
        .flat_map(|r| r.cdf.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Latency CDF, open loop (coordinated-omission corrected)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((1f64..max * 1.1).log_scale(), 0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency (µs, log)")
        .y_desc("fraction of requests")
        .draw()?;
    for (i, r) in rows.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                r.cdf.iter().map(|(x, y)| (x.max(1.0), *y)),
                color.stroke_width(2),
            ))?
            .label(r.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A plot's words: caption and axis descriptions.
pub struct Labels<'a> {
    pub caption: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// One line per named series of (x, y), x on a log scale, y from zero.
pub fn lines(path: &Path, labels: &Labels<'_>, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let pts = || series.iter().flat_map(|(_, p)| p.iter());
    let max_x = pts().map(|p| p.0).fold(1.0f64, f64::max);
    let min_x = pts().map(|p| p.0).fold(max_x, f64::min).max(1.0);
    let max_y = pts().map(|p| p.1).fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(labels.caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((min_x / 1.2..max_x * 1.2).log_scale(), 0f64..max_y * 1.15)?;
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
