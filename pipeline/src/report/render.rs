//! The minijinja environment of the reports: templates embedded from `report-templates/`
//! (a folder given with `--templates` overrides them file by file), HTML auto-escaping for
//! every template whatever its name, and strict undefined values, so a missing field fails
//! the render instead of printing an empty cell.

use std::path::Path;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use super::{Error, Result};

/// The embedded templates: (name, source).
const EMBEDDED: &[(&str, &str)] = &[
    (
        "style.css",
        include_str!("../../../report-templates/style.css"),
    ),
    (
        "table.html",
        include_str!("../../../report-templates/table.html"),
    ),
    (
        "provenance.html",
        include_str!("../../../report-templates/provenance.html"),
    ),
    (
        "package.html",
        include_str!("../../../report-templates/package.html"),
    ),
    (
        "package.md",
        include_str!("../../../report-templates/package.md"),
    ),
    (
        "index.html",
        include_str!("../../../report-templates/index.html"),
    ),
];

/// A template value from anything serde serialises (minijinja 3 converts through
/// `Into<Value>` and takes serde values wrapped in `Serde`).
pub fn serde_value<T: serde::Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// Rendering environment.
pub struct Templates {
    env: Environment<'static>,
}

/// Escapes a cell for a Markdown table (pipes, line breaks, backslashes, backticks); HTML
/// auto-escaping then neutralises markup.
fn md(value: String) -> String {
    // Most cells hold none of them: handed back as they are, without four copies.
    if !value.contains(['\\', '|', '`', '\r', '\n']) {
        return value;
    }
    value
        .replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('`', "\\`")
        .replace(['\r', '\n'], " ")
}

impl Templates {
    /// The embedded templates, each replaced by the file of the same name in `dir` if given.
    pub fn load(dir: Option<&Path>) -> Result<Self> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.add_filter("md", md);
        for (name, source) in EMBEDDED {
            let source = match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
                Some(path) => {
                    std::fs::read_to_string(&path).map_err(super::io_err("read", &path))?
                }
                None => (*source).to_string(),
            };
            env.add_template_owned(*name, source)
                .map_err(|source| Error::Render {
                    template: (*name).to_string(),
                    source,
                })?;
        }
        Ok(Self { env })
    }

    /// Renders a template with a context into `out` as it goes (no copy of the whole page
    /// in memory).
    pub fn render_to(&self, name: &str, context: Value, out: impl std::io::Write) -> Result<()> {
        self.env
            .get_template(name)
            .and_then(|t| t.render_captured_to(context, out))
            .map(|_| ())
            .map_err(|source| Error::Render {
                template: name.to_string(),
                source,
            })
    }

    /// Renders a template with a context.
    pub fn render(&self, name: &str, context: &impl serde::Serialize) -> Result<String> {
        let err = |source| Error::Render {
            template: name.to_string(),
            source,
        };
        self.env
            .get_template(name)
            .and_then(|t| t.render(serde_value(context)))
            .map_err(err)
    }
}

/// Markup the templates may print as is (charts built and escaped in Rust).
pub fn safe(markup: String) -> Value {
    Value::from_safe_string(markup)
}

#[cfg(test)]
mod tests {
    use super::Templates;

    #[test]
    fn every_template_escapes_and_undefined_fails() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("table.html"), "{{ title }}|{{ missing }}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let err = t
            .render("table.html", &serde_json::json!({"title": "<b>"}))
            .unwrap_err();
        assert!(format!("{:?}", err).contains("undefined"), "{err:?}");
        std::fs::write(dir.path().join("table.html"), "{{ title }}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(
            t.render("table.html", &serde_json::json!({"title": "<script>'\""}))
                .unwrap(),
            "&lt;script&gt;&#x27;&quot;"
        );
    }
}
