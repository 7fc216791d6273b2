//! A small hand-written command-line parser (no external crates).
//!
//! Accepted forms: positional arguments, `--name value`, `--name=value`, boolean `--flag`,
//! `-h`/`--help`, `-q`/`--quiet` (every command), and `--` to end the options. Options may appear anywhere after the command.
//! Options not declared for a command, missing values, and non-repeatable options given twice
//! are usage errors.

use crate::{CliError, CliResult};
use std::str::FromStr;

/// Declaration of one option of a command.
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    /// Long name without the dashes, e.g. `"runs"`.
    pub name: &'static str,
    /// Whether the option takes a value.
    pub value: bool,
    /// Whether the option may be given more than once.
    pub repeat: bool,
}

impl Opt {
    /// An option taking one value, at most once.
    pub const fn value(name: &'static str) -> Opt {
        Opt { name, value: true, repeat: false }
    }
    /// An option taking a value, any number of times.
    pub const fn repeated(name: &'static str) -> Opt {
        Opt { name, value: true, repeat: true }
    }
    /// A boolean flag.
    pub const fn flag(name: &'static str) -> Opt {
        Opt { name, value: false, repeat: false }
    }
}

/// Parsed arguments of one command.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The command the arguments belong to (for error messages).
    pub command: &'static str,
    /// Positional arguments in order.
    pub positional: Vec<String>,
    /// `(option, value)` pairs in order; flags have an empty value.
    pub options: Vec<(&'static str, String)>,
    /// Whether `-h`/`--help` was given.
    pub help: bool,
    /// Whether `-q`/`--quiet` was given: no progress and no warnings on stderr (the result on
    /// stdout and errors stay).
    pub quiet: bool,
}

/// Parse `args` (after the command name) against the declared options.
pub fn parse(command: &'static str, args: &[String], opts: &[Opt]) -> CliResult<Parsed> {
    let mut p = Parsed { command, ..Parsed::default() };
    let mut i = 0;
    let mut only_positional = false;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if only_positional || a == "-" || !a.starts_with('-') {
            p.positional.push(a.clone());
            continue;
        }
        if a == "--" {
            only_positional = true;
            continue;
        }
        if a == "-h" || a == "--help" {
            p.help = true;
            continue;
        }
        if a == "-q" || a == "--quiet" {
            p.quiet = true;
            continue;
        }
        let Some(body) = a.strip_prefix("--") else {
            return Err(CliError::usage(command, format!("unknown option '{a}'")));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(spec) = opts.iter().find(|o| o.name == name) else {
            return Err(CliError::usage(command, format!("unknown option '--{name}' for '{command}'")));
        };
        let value = if spec.value {
            match inline {
                Some(v) => v,
                None => {
                    let Some(v) = args.get(i) else {
                        return Err(CliError::usage(command, format!("option '--{name}' needs a value")));
                    };
                    i += 1;
                    v.clone()
                }
            }
        } else {
            if inline.is_some() {
                return Err(CliError::usage(command, format!("option '--{name}' takes no value")));
            }
            String::new()
        };
        if !spec.repeat && p.options.iter().any(|(n, _)| *n == spec.name) {
            return Err(CliError::usage(command, format!("option '--{name}' given more than once")));
        }
        p.options.push((spec.name, value));
    }
    Ok(p)
}

impl Parsed {
    /// The value of a single-valued option.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable option, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.options.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// Whether a flag was given.
    pub fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _)| *n == name)
    }

    /// A numeric option, or `default` when absent; `min` is the smallest accepted value.
    pub fn number<T>(&self, name: &str, default: T, min: T) -> CliResult<T>
    where
        T: FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(s) => match s.trim().parse::<T>() {
                Ok(v) if v >= min => Ok(v),
                Ok(_) => Err(CliError::usage(self.command, format!("--{name} must be at least {min}, got '{s}'"))),
                Err(_) => Err(CliError::usage(self.command, format!("--{name} expects a whole number, got '{s}'"))),
            },
        }
    }

    /// The single positional argument `MODEL.tmf`.
    pub fn model_path(&self) -> CliResult<&str> {
        match self.positional.as_slice() {
            [m] => Ok(m.as_str()),
            [] => Err(CliError::usage(self.command, "missing MODEL.tmf argument")),
            [_, extra, ..] => Err(CliError::usage(self.command, format!("unexpected argument '{extra}' (only one MODEL.tmf)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    const OPTS: &[Opt] = &[Opt::value("runs"), Opt::repeated("input"), Opt::flag("json")];

    #[test]
    fn parses_forms() {
        let p = parse("t", &s(&["m.tmf", "--runs=5", "--input", "a", "--input", "b", "--json"]), OPTS).unwrap();
        assert_eq!(p.positional, vec!["m.tmf"]);
        assert_eq!(p.get("runs"), Some("5"));
        assert_eq!(p.all("input"), vec!["a", "b"]);
        assert!(p.flag("json"));
        assert_eq!(p.number::<usize>("runs", 1, 1).unwrap(), 5);
        assert_eq!(p.model_path().unwrap(), "m.tmf");
    }

    #[test]
    fn rejects_bad_args() {
        assert!(parse("t", &s(&["--nope"]), OPTS).is_err());
        assert!(parse("t", &s(&["--runs"]), OPTS).is_err());
        assert!(parse("t", &s(&["--runs", "1", "--runs", "2"]), OPTS).is_err());
        assert!(parse("t", &s(&["--json=1"]), OPTS).is_err());
        assert!(parse("t", &s(&["-x"]), OPTS).is_err());
        let p = parse("t", &s(&["--runs", "x"]), OPTS).unwrap();
        assert!(p.number::<usize>("runs", 1, 1).is_err());
        let p = parse("t", &s(&["--runs", "0"]), OPTS).unwrap();
        assert!(p.number::<usize>("runs", 1, 1).is_err());
        assert!(parse("t", &s(&[]), OPTS).unwrap().model_path().is_err());
        assert!(parse("t", &s(&["a", "b"]), OPTS).unwrap().model_path().is_err());
    }

    #[test]
    fn help_and_separator() {
        let p = parse("t", &s(&["-h", "--", "--json"]), OPTS).unwrap();
        assert!(p.help);
        assert!(!p.quiet);
        assert!(parse("t", &s(&["m.tmf", "-q"]), OPTS).unwrap().quiet);
        assert!(parse("t", &s(&["--quiet", "m.tmf"]), OPTS).unwrap().quiet);
        assert_eq!(p.positional, vec!["--json"]);
    }
}
