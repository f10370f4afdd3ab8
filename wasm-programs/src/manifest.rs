//! The run manifest beside each program, `c/NAME.run`: one `key: value`
//! per line, `#` starts a comment line.
//!
//! ```text
//! description: one line saying what the program shows   (required)
//! benchmark: yes                 one of the six benchmarks (default: no)
//! arg: two words                 one argument (after argv[0]); repeatable, in order
//! env: KEY=VALUE                 one environment variable; repeatable, sorted by KEY
//! stdin: NAME.in                 a file in c/ given as standard input (default: none)
//! status: 3                      the expected exit status (default: 0)
//! quick-arg: 25                  an argument of the short run; expected stdout in NAME.quick.out
//! ```
//!
//! The value is the rest of the line after `key:` and spaces, trimmed, so an
//! argument may contain spaces. The default run's expected standard output
//! is `c/NAME.out`. A program with `quick-arg` lines has a second, shorter
//! run for tests; the others are quick already and their quick run is the
//! default one. `env` lines are sorted because a native process receives
//! its environment sorted (Rust's `Command` keeps it in a sorted map) while
//! WASI runtimes keep the given order: a program printing `environ` must
//! see the same order everywhere.
//!
//! This file is compiled twice: into the build script, which turns the
//! manifests into the crate's table, and into the crate's unit tests.

/// One program's manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub description: String,
    pub benchmark: bool,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<String>,
    pub status: i32,
    /// Arguments of the short run, if it differs from the default run.
    pub quick_args: Option<Vec<String>>,
}

/// Why a manifest does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("line {line}: {text:?} is not `key: value`")]
    NotKeyValue { line: usize, text: String },
    #[error("line {line}: unknown key {key:?} (known: description, benchmark, arg, env, stdin, status, quick-arg)")]
    UnknownKey { line: usize, key: String },
    #[error("line {line}: {key} is given twice")]
    Repeated { line: usize, key: String },
    #[error("line {line}: benchmark is yes or no, not {value:?}")]
    BadFlag { line: usize, value: String },
    #[error("line {line}: status {value:?} is not a number from 0 to 255")]
    BadStatus { line: usize, value: String },
    #[error("line {line}: env wants KEY=VALUE with a non-empty KEY, not {value:?}")]
    BadEnv { line: usize, value: String },
    #[error("line {line}: env {key} comes after {previous}: keep env lines sorted by key")]
    UnsortedEnv { line: usize, key: String, previous: String },
    #[error("no description line")]
    NoDescription,
}

impl Manifest {
    /// Parses the text of a `.run` file.
    ///
    /// # Errors
    ///
    /// A line that is not `key: value`, an unknown or repeated key, a bad
    /// value, unsorted `env` lines, or no `description`.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let mut m = Manifest::default();
        let mut seen: Vec<&str> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (key, value) = trimmed
                .split_once(':')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| ManifestError::NotKeyValue { line, text: raw.to_string() })?;
            let once = matches!(key, "description" | "benchmark" | "stdin" | "status");
            if once && seen.contains(&key) {
                return Err(ManifestError::Repeated { line, key: key.to_string() });
            }
            seen.push(key);
            match key {
                "description" => m.description = value.to_string(),
                "benchmark" => {
                    m.benchmark = match value {
                        "yes" => true,
                        "no" => false,
                        _ => return Err(ManifestError::BadFlag { line, value: value.to_string() }),
                    }
                }
                "arg" => m.args.push(value.to_string()),
                "quick-arg" => m.quick_args.get_or_insert_with(Vec::new).push(value.to_string()),
                "env" => {
                    let (k, v) = value
                        .split_once('=')
                        .filter(|(k, _)| !k.is_empty())
                        .ok_or_else(|| ManifestError::BadEnv { line, value: value.to_string() })?;
                    if let Some((previous, _)) = m.env.last().filter(|(p, _)| p.as_str() >= k) {
                        return Err(ManifestError::UnsortedEnv {
                            line,
                            key: k.to_string(),
                            previous: previous.clone(),
                        });
                    }
                    m.env.push((k.to_string(), v.to_string()));
                }
                "stdin" => m.stdin = Some(value.to_string()),
                "status" => {
                    m.status = value
                        .parse()
                        .ok()
                        .filter(|s| (0..=255).contains(s))
                        .ok_or_else(|| ManifestError::BadStatus { line, value: value.to_string() })?;
                }
                _ => return Err(ManifestError::UnknownKey { line, key: key.to_string() }),
            }
        }
        if m.description.is_empty() {
            return Err(ManifestError::NoDescription);
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_read_and_arguments_keep_their_spaces() {
        let m = Manifest::parse(
            "# a comment\ndescription: says hello\nbenchmark: yes\narg: --exit\narg:  two words \nenv: A=\n\
             env: B=x=y\nstdin: x.in\nstatus: 3\nquick-arg: 25\n",
        )
        .unwrap();
        assert_eq!(
            m,
            Manifest {
                description: "says hello".into(),
                benchmark: true,
                args: vec!["--exit".into(), "two words".into()],
                env: vec![("A".into(), String::new()), ("B".into(), "x=y".into())],
                stdin: Some("x.in".into()),
                status: 3,
                quick_args: Some(vec!["25".into()]),
            }
        );
    }

    #[test]
    fn a_minimal_manifest_has_the_defaults() {
        let m = Manifest::parse("description: d").unwrap();
        assert_eq!(m, Manifest { description: "d".into(), ..Manifest::default() });
    }

    #[test]
    fn bad_lines_are_reported_with_their_line_number() {
        let cases = [
            ("description: d\nnonsense", ManifestError::NotKeyValue { line: 2, text: "nonsense".into() }),
            ("description: d\nargs: x", ManifestError::UnknownKey { line: 2, key: "args".into() }),
            ("description: d\ndescription: e", ManifestError::Repeated { line: 2, key: "description".into() }),
            ("description: d\nbenchmark: true", ManifestError::BadFlag { line: 2, value: "true".into() }),
            ("description: d\nstatus: 256", ManifestError::BadStatus { line: 2, value: "256".into() }),
            ("description: d\nenv: =x", ManifestError::BadEnv { line: 2, value: "=x".into() }),
            (
                "description: d\nenv: B=1\nenv: A=2",
                ManifestError::UnsortedEnv { line: 3, key: "A".into(), previous: "B".into() },
            ),
            ("arg: x", ManifestError::NoDescription),
        ];
        for (text, want) in cases {
            assert_eq!(Manifest::parse(text), Err(want), "{text:?}");
        }
    }
}
