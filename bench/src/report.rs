//! The one table `make bench` prints, and the JSON written beside it.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub measure: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    /// The same quantity measured for the reference in this run (the raw floor), if any.
    pub reference: Option<f64>,
    pub reference_label: String,
    /// value / reference.
    pub ratio: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
    pub note: String,
}

impl Row {
    pub fn new(scenario: impl Into<String>, measure: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self {
            scenario: scenario.into(),
            measure: measure.into(),
            value: Some(value),
            unit,
            reference: None,
            reference_label: String::new(),
            ratio: None,
            target: String::new(),
            met: None,
            note: String::new(),
        }
    }

    /// A measurement that could not be made.
    pub fn failed(scenario: impl Into<String>, measure: impl Into<String>, why: impl Into<String>) -> Self {
        let mut r = Self::new(scenario, measure, 0.0, "");
        r.value = None;
        r.met = Some(false);
        r.note = why.into();
        r
    }

    pub fn reference(mut self, label: impl Into<String>, value: f64) -> Self {
        self.reference_label = label.into();
        self.reference = Some(value);
        if let Some(v) = self.value
            && value > 0.0
        {
            self.ratio = Some(v / value);
        }
        self
    }

    /// A target with whether it was met.
    pub fn target(mut self, target: impl Into<String>, met: bool) -> Self {
        self.target = target.into();
        if self.value.is_some() {
            self.met = Some(met);
        }
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

fn fmt(v: Option<f64>, unit: &str) -> String {
    let Some(v) = v else { return "—".into() };
    match unit {
        "s" => format!("{v:.2} s"),
        // Admission adds milliseconds: a tenth of one shows at that scale.
        "ms" if v.abs() < 10.0 => format!("{v:.1} ms"),
        "ms" => format!("{v:.0} ms"),
        "MiB" => format!("{v:.1} MiB"),
        "CPU s" => format!("{v:.2} CPU s"),
        "CPU ms" => format!("{v:.0} CPU ms"),
        "" | "count" => format!("{v:.0}"),
        "req/pod" => format!("{v:.2}"),
        u => format!("{v:.1} {u}"),
    }
}

/// The table, with notes as numbered footnotes below it.
pub fn render(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "measure",
        "value",
        "reference (same run)",
        "ratio",
        "target",
        "met",
    ];
    let mut notes = Vec::new();
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let mut measure = r.measure.clone();
            if !r.note.is_empty() {
                notes.push(r.note.clone());
                measure = format!("{measure} [{}]", notes.len());
            }
            let reference = match r.reference {
                Some(v) => format!("{} {}", fmt(Some(v), r.unit), r.reference_label),
                None => "—".into(),
            };
            [
                r.scenario.clone(),
                measure,
                fmt(r.value, r.unit),
                reference,
                r.ratio.map(|x| format!("{x:.2}×")).unwrap_or_else(|| "—".into()),
                if r.target.is_empty() {
                    "—".into()
                } else {
                    r.target.clone()
                },
                match r.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "—".into(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut s = String::from("|");
        for (c, w) in cols.iter().zip(widths) {
            s.push_str(&format!(" {c}{} |", " ".repeat(w - c.chars().count())));
        }
        s
    };
    let mut out = vec![line(&header.map(String::from)), line(&widths.map(|w| "-".repeat(w)))];
    out.extend(cells.iter().map(|r| line(r)));
    if !notes.is_empty() {
        out.push(String::new());
        out.extend(notes.iter().enumerate().map(|(i, n)| format!("[{}] {n}", i + 1)));
    }
    out.join("\n")
}
