//! The supervisor's decision log: one JSON object per line, each with the
//! time since the supervisor started and the wall-clock time, the event,
//! and the fields that explain it (cause, attempt, delay, ...), so that a
//! script (or a test) can replay what it decided and when.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Instant;

/// A field's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(u64),
    Ms(f64),
    Null,
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(u64::from(v))
    }
}

/// `s` as a JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of `key` in a line of this log: a string unquoted and
/// unescaped, a number or `null` as written. Any input, no panic.
pub fn field(line: &str, key: &str) -> Option<String> {
    let pattern = format!("{}:", quote(key));
    let at = line.find(&pattern)? + pattern.len();
    let rest = &line[at..];
    let Some(string) = rest.strip_prefix('"') else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        return Some(rest[..end].to_string());
    };
    let mut out = String::new();
    let mut chars = string.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn render(value: &Value) -> String {
    match value {
        Value::Str(s) => quote(s),
        Value::Int(v) => v.to_string(),
        Value::Ms(v) if v.is_finite() => format!("{v:.3}"),
        Value::Ms(_) | Value::Null => "null".to_string(),
    }
}

/// Writes the log lines.
pub struct JsonLog<'w> {
    out: &'w mut dyn Write,
    start: Instant,
}

impl std::fmt::Debug for JsonLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLog").field("start", &self.start).finish_non_exhaustive()
    }
}

impl<'w> JsonLog<'w> {
    /// A log on `out` whose times count from now.
    pub fn new(out: &'w mut dyn Write) -> Self {
        JsonLog { out, start: Instant::now() }
    }

    /// The line of one event (without writing it).
    pub fn line(&self, event: &str, fields: &[(&str, Value)]) -> String {
        let unix_ms = super::session::unix_ns() as f64 / 1e6;
        let mut line = format!(
            "{{\"time_ms\":{:.3},\"unix_ms\":{unix_ms:.3},\"event\":{}",
            self.start.elapsed().as_secs_f64() * 1e3,
            quote(event)
        );
        for (key, value) in fields {
            let _ = write!(line, ",{}:{}", quote(key), render(value));
        }
        line.push('}');
        line
    }

    /// Writes one event (a log that cannot be written must not stop the supervisor).
    pub fn event(&mut self, event: &str, fields: &[(&str, Value)]) {
        let line = self.line(event, fields);
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json_requires() {
        assert_eq!(quote("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn a_line_has_the_times_the_event_and_its_fields() {
        let mut buf = Vec::new();
        let mut log = JsonLog::new(&mut buf);
        log.event(
            "restart",
            &[
                ("attempt", 2u32.into()),
                ("delay_ms", Value::Ms(20.0)),
                ("cause", "triple \"fault\"".into()),
                ("x", Value::Null),
            ],
        );
        log.event("nan", &[("v", Value::Ms(f64::NAN))]);
        let text = String::from_utf8(buf).unwrap();
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("{\"time_ms\":") && first.contains(",\"unix_ms\":"), "{first}");
        assert!(
            first.ends_with(",\"event\":\"restart\",\"attempt\":2,\"delay_ms\":20.000,\"cause\":\"triple \\\"fault\\\"\",\"x\":null}"),
            "{first}"
        );
        assert!(text.lines().nth(1).unwrap().ends_with("\"v\":null}"));
        assert_eq!(field(first, "event").as_deref(), Some("restart"));
        assert_eq!(field(first, "attempt").as_deref(), Some("2"));
        assert_eq!(field(first, "cause").as_deref(), Some("triple \"fault\""));
        assert_eq!(field(first, "x").as_deref(), Some("null"));
        assert_eq!(field(first, "fault"), None, "a key inside a string value is not a key");
    }

    #[test]
    fn any_string_comes_back_out_of_a_line() {
        let mut sink = Vec::new();
        let log = JsonLog::new(&mut sink);
        for s in ["", "plain", "quote \" and \\ back", "\u{0}\u{1f}\n\t", "ünïcödé ✓", "\"pid\":1,"] {
            let line = log.line("e", &[("pid", 7u32.into()), ("s", s.into())]);
            assert_eq!(field(&line, "s").as_deref(), Some(s), "{line}");
            assert_eq!(field(&line, "pid").as_deref(), Some("7"), "{line}");
        }
        assert_eq!(field("{\"s\":\"unterminated", "s"), None);
        assert_eq!(field("{\"s\":\"bad \\u12\"}", "s"), None);
    }
}
