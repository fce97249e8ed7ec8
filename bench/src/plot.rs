//! Latency-percentile plot from loadgen's `--hgrm` files, drawn with
//! plotters (SVG), in the style of HdrHistogram's plotter: latency against
//! 1/(1-percentile) on a log axis, so the tail is as visible as the median.

use std::path::Path;

use plotters::prelude::*;

/// One curve: (1/(1-p), latency in microseconds) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Why an `.hgrm` file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} holds no percentile rows")]
    Empty(String),
    #[error("drawing: {0}")]
    Draw(String),
}

/// Reads the `Value Percentile TotalCount 1/(1-Percentile)` rows of an
/// HdrHistogram text file; header, `#` summary lines and the `Infinity`
/// last row are skipped.
pub fn read_hgrm(path: &Path, label: &str) -> Result<Curve, PlotError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| PlotError::Io(path.display().to_string(), e))?;
    let points: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            match cols.as_slice() {
                [value, _pct, _count, inv] => {
                    Some((inv.parse::<f64>().ok()?, value.parse::<f64>().ok()?))
                }
                _ => None,
            }
        })
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if points.is_empty() {
        return Err(PlotError::Empty(path.display().to_string()));
    }
    Ok(Curve {
        label: label.to_owned(),
        points,
    })
}

/// Draws the curves into an SVG file.
pub fn draw(curves: &[Curve], title: &str, out: &Path) -> Result<(), PlotError> {
    let draw_err = |e: &dyn std::fmt::Display| PlotError::Draw(e.to_string());
    let max_x = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .fold(10.0f64, f64::max);
    let max_y = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .fold(10.0f64, f64::max);
    let root = SVGBackend::new(out, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (1.0f64..max_x * 1.2).log_scale(),
            (1.0f64..max_y * 1.5).log_scale(),
        )
        .map_err(|e| draw_err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (us)")
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 1.0 / x);
            format!("{p:.3}%")
        })
        .draw()
        .map_err(|e| draw_err(&e))?;
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, curve) in curves.iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(
                curve.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| draw_err(&e))?
            .label(curve.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| draw_err(&e))?;
    root.present().map_err(|e| draw_err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HGRM: &str = "       Value     Percentile TotalCount 1/(1-Percentile)

      12.000 0.000000000000          1           1.00
      20.000 0.500000000000        500           2.00
      95.000 0.990000000000        990         100.00
     400.000 1.000000000000       1000
#[Mean    =       25.000, StdDeviation   =        10.000]
";

    #[test]
    fn reads_rows_and_draws_an_svg() {
        let dir = std::env::temp_dir().join(format!("ipcs-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hgrm = dir.join("a.hgrm");
        std::fs::write(&hgrm, HGRM).unwrap();
        let curve = read_hgrm(&hgrm, "A").unwrap();
        assert_eq!(curve.points, vec![(1.0, 12.0), (2.0, 20.0), (100.0, 95.0)]);
        let svg = dir.join("plot.svg");
        draw(&[curve], "test", &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg") && text.contains("latency"));
        std::fs::write(&hgrm, "nothing here\n").unwrap();
        assert!(matches!(read_hgrm(&hgrm, "A"), Err(PlotError::Empty(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
