//! What commands print: the [`Printer`] (results on stdout as text or the JSON envelope,
//! progress bars on stderr) and aligned text tables.

use crate::cli::{Cli, OutputFormat};

/// Where output goes: results on stdout, progress on stderr.
#[derive(Debug, Clone)]
pub struct Printer {
    /// Output format.
    pub format: OutputFormat,
    /// Show progress bars.
    pub progress: bool,
    /// Quiet level.
    pub quiet: u8,
}

impl Printer {
    pub(super) fn new(cli: &Cli) -> Self {
        let g = &cli.global;
        Self {
            format: g.format,
            progress: !g.no_progress
                && g.quiet == 0
                && g.verbose == 0
                && g.format == OutputFormat::Text,
            quiet: g.quiet,
        }
    }

    /// A byte progress bar on stderr (hidden when progress is off or stderr is no terminal).
    pub fn bytes_bar(&self, message: &'static str) -> indicatif::ProgressBar {
        self.bar(
            message,
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {prefix} eta {eta}",
        )
    }

    /// A progress bar on stderr drawn with an indicatif `template` (hidden when progress is
    /// off or stderr is no terminal).
    pub fn bar(&self, message: &'static str, template: &str) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(message);
        bar
    }

    /// Prints the JSON envelope of a command's result on stdout.
    pub fn json(
        &self,
        command: &str,
        status: &str,
        summary: &impl serde::Serialize,
    ) -> anyhow::Result<()> {
        let doc = serde_json::json!({
            "schema_version": 1,
            "command": command,
            "status": status,
            "summary": summary,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        Ok(())
    }
}

/// Formats rows as an aligned text table.
pub fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i] - c.chars().count();
                // Numbers right-aligned, text left-aligned.
                if i > 0
                    && c.chars()
                        .next()
                        .is_some_and(|ch| ch.is_ascii_digit() || ch == '-')
                {
                    format!("{}{}", " ".repeat(pad), c)
                } else {
                    format!("{}{}", c, " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}
