//! Figures per round, their medians, the Fjord/peer ratio as the geometric mean of per-round
//! ratios, the peer/peer ratio of the self-comparison (the noise floor), a Markdown table and an
//! SVG chart of the ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Which broker a figure was measured on. `PeerAgain` is the peer's second run of a round, for
/// the self-comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Column {
    Fjord,
    Peer,
    PeerAgain,
    FjordRelaxed,
    /// The second peer (Nisshi), when installed.
    SecondPeer,
}

/// One figure a workload reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figure {
    pub workload: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
    /// Throughput: higher is better; latency and memory: lower is better.
    pub higher_is_better: bool,
}

#[derive(Debug, Default)]
pub struct Results {
    /// Figures in the order first recorded.
    figures: Vec<Figure>,
    /// Per figure and column, one value per round.
    values: BTreeMap<(usize, Column), Vec<f64>>,
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// Geometric mean of `a[i] / b[i]` over the rounds both have.
pub fn geomean_ratio(a: &[f64], b: &[f64]) -> Option<f64> {
    let logs: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| **x > 0.0 && **y > 0.0 && x.is_finite() && y.is_finite())
        .map(|(x, y)| (x / y).ln())
        .collect();
    if logs.is_empty() {
        return None;
    }
    Some((logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

impl Results {
    pub fn record(&mut self, figure: Figure, column: Column, value: f64) {
        let index = match self.figures.iter().position(|f| *f == figure) {
            Some(index) => index,
            None => {
                self.figures.push(figure);
                self.figures.len() - 1
            }
        };
        self.values.entry((index, column)).or_default().push(value);
    }

    fn series(&self, index: usize, column: Column) -> &[f64] {
        self.values
            .get(&(index, column))
            .map_or(&[][..], Vec::as_slice)
    }

    /// The median of one figure in one column.
    pub fn median_of(&self, figure: Figure, column: Column) -> Option<f64> {
        let index = self.figures.iter().position(|f| *f == figure)?;
        median(self.series(index, column))
    }

    /// Fjord/peer per figure (geometric mean of per-round ratios).
    pub fn ratios(&self) -> Vec<(Figure, Option<f64>, Option<f64>)> {
        self.figures
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    *f,
                    geomean_ratio(self.series(i, Column::Fjord), self.series(i, Column::Peer)),
                    geomean_ratio(
                        self.series(i, Column::PeerAgain),
                        self.series(i, Column::Peer),
                    ),
                )
            })
            .collect()
    }

    /// The table; `second` names the second peer's columns (Fjord against it, no noise
    /// floor of its own) when it ran.
    pub fn markdown(&self, peer: &str, second: Option<&str>) -> String {
        let cell = |v: Option<f64>| v.map_or("–".to_owned(), format_value);
        let ratio = |v: Option<f64>| v.map_or("–".to_owned(), |r| format!("{r:.2}"));
        let mut out = String::new();
        let second_head = second.map_or(String::new(), |s| format!(" {s} | Fjord/{s} |"));
        let second_rule = if second.is_some() { "---:|---:|" } else { "" };
        let _ = writeln!(
            out,
            "| Workload | Figure | Fjord | {peer} | Fjord/{peer} | {peer}/{peer} (noise) | Fjord, relaxed flush |{second_head}"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|{second_rule}");
        for (i, figure) in self.figures.iter().enumerate() {
            let better = if figure.higher_is_better {
                "higher is better"
            } else {
                "lower is better"
            };
            let second_cells = second.map_or(String::new(), |_| {
                format!(
                    " {} | {} |",
                    cell(median(self.series(i, Column::SecondPeer))),
                    ratio(geomean_ratio(
                        self.series(i, Column::Fjord),
                        self.series(i, Column::SecondPeer)
                    ))
                )
            });
            let _ = writeln!(
                out,
                "| {} | {} ({}; {better}) | {} | {} | {} | {} | {} |{second_cells}",
                figure.workload,
                figure.name,
                figure.unit,
                cell(median(self.series(i, Column::Fjord))),
                cell(median(self.series(i, Column::Peer))),
                ratio(geomean_ratio(
                    self.series(i, Column::Fjord),
                    self.series(i, Column::Peer)
                )),
                ratio(geomean_ratio(
                    self.series(i, Column::PeerAgain),
                    self.series(i, Column::Peer)
                )),
                cell(median(self.series(i, Column::FjordRelaxed))),
            );
        }
        out
    }

    /// A horizontal bar chart of the Fjord/peer ratios, with the noise floor marked.
    pub fn svg(&self, title: &str, peer: &str) -> String {
        let rows = self.ratios();
        let max = rows
            .iter()
            .flat_map(|(_, r, n)| [r.unwrap_or(0.0), n.unwrap_or(0.0)])
            .fold(1.0f64, f64::max)
            .max(1.2)
            * 1.1;
        let (left, width, row_height, top) = (330.0, 460.0, 28.0, 50.0);
        let height = top + row_height * rows.len() as f64 + 50.0;
        let x = |v: f64| left + v / max * width;
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#,
            w = left + width + 60.0
        );
        let _ = writeln!(
            out,
            r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="14" font-weight="bold">{}</text>"#,
            escape(title)
        );
        let _ = writeln!(
            out,
            r##"<text x="10" y="40" fill="#555">Fjord/{peer}, geometric mean of per-round ratios; grey tick: {peer}/{peer} (noise)</text>"##
        );
        for (i, (figure, ratio, noise)) in rows.iter().enumerate() {
            let y = top + row_height * i as f64;
            let label = format!("{} {}", figure.workload, figure.name);
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                left - 8.0,
                y + 17.0,
                escape(&label)
            );
            if let Some(ratio) = ratio {
                let good = (*ratio >= 1.0) == figure.higher_is_better;
                let colour = if good { "#2f7d32" } else { "#c62828" };
                let _ = writeln!(
                    out,
                    r##"<rect x="{left}" y="{}" width="{:.1}" height="18" fill="{colour}"/><text x="{:.1}" y="{}">{ratio:.2}</text>"##,
                    y + 4.0,
                    x(*ratio) - left,
                    x(*ratio) + 4.0,
                    y + 17.0
                );
            }
            if let Some(noise) = noise {
                let _ = writeln!(
                    out,
                    r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{2}" stroke="#777" stroke-width="3"/>"##,
                    x(*noise),
                    y + 2.0,
                    y + 24.0
                );
            }
        }
        let bottom = top + row_height * rows.len() as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{2}" stroke="black" stroke-dasharray="4 3"/><text x="{0:.1}" y="{3}" text-anchor="middle">1.0</text>"#,
            x(1.0),
            top - 4.0,
            bottom + 4.0,
            bottom + 20.0
        );
        out.push_str("</svg>\n");
        out
    }
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_geometric_means() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let ratio = geomean_ratio(&[2.0, 8.0], &[1.0, 2.0]).unwrap();
        assert!((ratio - 8f64.sqrt()).abs() < 1e-9);
        assert_eq!(geomean_ratio(&[1.0], &[0.0]), None);
    }

    #[test]
    fn the_table_has_a_row_per_figure() {
        let figure = Figure {
            workload: "W1",
            name: "throughput",
            unit: "MB/s",
            higher_is_better: true,
        };
        let mut results = Results::default();
        for (fjord, peer, again, second) in [(100.0, 50.0, 55.0, 25.0), (120.0, 60.0, 57.0, 30.0)] {
            results.record(figure, Column::Fjord, fjord);
            results.record(figure, Column::Peer, peer);
            results.record(figure, Column::PeerAgain, again);
            results.record(figure, Column::SecondPeer, second);
        }
        let table = results.markdown("Tansu", None);
        assert!(
            table.contains("| W1 | throughput (MB/s; higher is better) | 110 | 55.0 | 2.00 |"),
            "{table}"
        );
        assert!(!table.contains("Nisshi"), "{table}");
        let table = results.markdown("Tansu", Some("Nisshi"));
        assert!(table.contains("| Fjord/Nisshi |"), "{table}");
        assert!(table.contains("| 27.5 | 4.00 |"), "{table}");
        assert!(results.svg("t", "Tansu").contains("2.00"));
    }
}
