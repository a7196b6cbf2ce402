//! The demo's printing: tables, headlines, step timings.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::STEPS;

pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>], indent: usize) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = " ".repeat(indent);
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub(crate) fn say(line: &str) {
    if line.is_empty() {
        println!();
    } else {
        println!("    {line}");
    }
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

pub(crate) fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Bold headlines on a terminal, plain text in a pipe.
pub(crate) struct Style {
    tty: bool,
}

impl Style {
    pub(crate) fn bold(&self, text: &str) -> String {
        if self.tty {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Numbered headlines, and how long each step took.
pub(crate) struct Steps {
    pub(crate) style: Style,
    pub(crate) current: Option<(String, Instant)>,
    done: Vec<(String, Duration)>,
}

impl Steps {
    pub(crate) fn new() -> Self {
        Self {
            style: Style {
                tty: std::io::stdout().is_terminal(),
            },
            current: None,
            done: Vec::new(),
        }
    }

    pub(crate) fn begin(&mut self, name: &str, headline: &str) {
        self.end();
        let n = self.done.len() + 1;
        println!();
        println!("{}", self.style.bold(&format!("[{n}/{STEPS}] {headline}")));
        self.current = Some((name.to_string(), Instant::now()));
    }

    pub(crate) fn end(&mut self) {
        if let Some((name, started)) = self.current.take() {
            let took = started.elapsed();
            println!("    … {}", secs(took));
            self.done.push((name, took));
        }
    }

    pub(crate) fn summary(&self) {
        let parts: Vec<String> = self
            .done
            .iter()
            .enumerate()
            .map(|(i, (name, took))| format!("{}. {name} {}", i + 1, secs(*took)))
            .collect();
        println!("Steps: {}", parts.join(" · "));
    }
}
