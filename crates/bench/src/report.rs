//! The collector of result lines. Every workload takes a `&mut Report` and pushes
//! `name value unit` lines into it; each line is printed as soon as it is pushed (so a long
//! run shows progress), and failed checks are remembered so the process can exit non-zero
//! after everything has been printed.

use std::io::Write;

/// One result: a dotted name, a value and a unit (`-` for dimensionless values).
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Dotted name, e.g. `w1.hand.ns_per_op`.
    pub name: String,
    /// The value as printed.
    pub value: String,
    /// The unit, e.g. `ns`, `ms`, `GFLOP/s`, `bytes`, `x` (a ratio) or `-`.
    pub unit: String,
}

/// Collects result lines and failed checks.
#[derive(Debug, Default)]
pub struct Report {
    lines: Vec<Line>,
    failures: Vec<String>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pushes a measured figure, printed with a precision suited to timings and rates.
    pub fn push(&mut self, name: impl Into<String>, value: f64, unit: &str) {
        let a = value.abs();
        let text = if !value.is_finite() || value.fract() == 0.0 {
            format!("{value}")
        } else if a >= 100.0 {
            format!("{value:.1}")
        } else if a >= 1.0 {
            format!("{value:.3}")
        } else if a >= 1e-3 {
            format!("{value:.5}")
        } else {
            format!("{value:.4e}")
        };
        self.push_raw(name.into(), text, unit);
    }

    /// Pushes a value printed exactly (shortest round-trip form): checksums, losses.
    pub fn push_exact(&mut self, name: impl Into<String>, value: f64, unit: &str) {
        self.push_raw(name.into(), format!("{value:?}"), unit);
    }

    /// Pushes a line whose value is already text (e.g. one read from a child process).
    pub fn push_raw(&mut self, name: String, value: String, unit: &str) {
        let line = Line {
            name,
            value,
            unit: unit.to_string(),
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. piped into `head`) must not abort the measurement.
        let _ = writeln!(out, "{} {} {}", line.name, line.value, line.unit);
        let _ = out.flush();
        self.lines.push(line);
    }

    /// Records a failed check; it is printed to stderr now and makes the run exit non-zero.
    pub fn fail(&mut self, message: impl Into<String>) {
        let message = message.into();
        eprintln!("CHECK FAILED: {message}");
        self.failures.push(message);
    }

    /// Checks `got` against `want` within a relative tolerance; a miss is a failure.
    pub fn check_close(&mut self, what: &str, got: f64, want: f64, rel_tol: f64) {
        let err = (got - want).abs() / want.abs().max(f64::MIN_POSITIVE);
        // Written so that a NaN (no ordering) counts as a miss.
        if err.is_nan() || err > rel_tol {
            self.fail(format!(
                "{what}: got {got:?}, want {want:?} (relative error {err:.3e} > {rel_tol:e})"
            ));
        }
    }

    /// The value of the first line with this name, parsed as a number.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.lines
            .iter()
            .find(|l| l.name == name)
            .and_then(|l| l.value.parse().ok())
    }

    /// The failed checks so far.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// Parses `name value unit` lines printed by a child process and pushes them here.
    /// Lines that do not have that shape are passed through to stderr.
    pub fn absorb(&mut self, child_stdout: &str) {
        for text in child_stdout.lines() {
            let mut parts = text.split_whitespace();
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(name), Some(value), Some(unit), None) => {
                    self.push_raw(name.to_string(), value.to_string(), unit)
                }
                _ if text.trim().is_empty() => {}
                _ => eprintln!("(child) {text}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_close_records_failures() {
        let mut r = Report::new();
        r.check_close("ok", 1.0 + 1e-12, 1.0, 1e-9);
        assert!(r.failures().is_empty());
        r.check_close("off", 1.1, 1.0, 1e-9);
        r.check_close("nan", f64::NAN, 1.0, 1e-9);
        assert_eq!(r.failures().len(), 2);
    }

    #[test]
    fn absorb_round_trips_lines() {
        let mut r = Report::new();
        r.absorb("a.b 1.5 ms\nsome free-form note here\n\nc.d -0.25 -\n");
        assert_eq!(r.lines.len(), 2);
        assert_eq!(r.value("a.b"), Some(1.5));
        assert_eq!(r.value("c.d"), Some(-0.25));
        assert_eq!(r.lines[1].unit, "-");
    }
}
