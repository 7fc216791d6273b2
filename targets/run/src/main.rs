//! `temper-run`: inspect, run, evaluate and benchmark `.tmf` INT8 models on the device.
//!
//! ```text
//! temper-run info  MODEL.tmf [--json]
//! temper-run run   MODEL.tmf --input x.npy [--input x2.npy …] [--output y.npy …] [--raw]
//!                  [--output-i8] [--layout auto|nchw|nhwc] [--kernels LEVEL] [--json]
//! temper-run eval  MODEL.tmf (--images PATH --labels PATH | --data SPEC) [--limit N]
//!                  [--threads T] [--layout auto|nchw|nhwc] [--kernels LEVEL] [--json]
//! temper-run bench MODEL.tmf [--runs N] [--warmup W] [--kernels LEVEL] [--json]
//! temper-run soak  MODEL.tmf (--data SPEC | --images PATH --labels PATH) [--count N]
//!                  [--rss-every N] [--warmup N] [--rss-slack KIB] [--limit N] [--kernels LEVEL] [--json]
//! ```
//!
//! Every command takes `--help`, `--json` (the result as one JSON object on stdout, written
//! with `serde_json`) and `-q`/`--quiet` (no progress, no warnings; also before the command).
//! Progress goes to stderr only when stderr is a terminal. Accuracies are percentages with two
//! decimals (`91.54%`), in JSON as unrounded percentages. Exit status: 0 on success, 1 when the work fails (missing or
//! invalid file, input that does not fit the model, …), 2 for bad command-line arguments. Errors
//! are one line on stderr naming the file and the problem; the program never panics on bad
//! input. `-v`/`--verbose` (before the command) or `TEMPER_LOG=info|debug|trace` print the
//! runtime's log messages on stderr.
//!
//! Built on `temper-runtime`, `temper-kernels`, `temper-data`, `log`, and `serde`/`serde_json`
//! for `--json`; arguments are parsed by hand ([`args`]).

mod args;
mod bench;
mod common;
mod eval;
mod info;
mod run;
mod soak;

use std::fmt;
use std::process::ExitCode;

/// Exit status for a failed command (bad file, bad input, …).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for bad command-line arguments.
pub const EXIT_USAGE: u8 = 2;

/// An error that ends the program with a message and a non-zero exit status.
#[derive(Debug)]
pub enum CliError {
    /// Bad command-line arguments; the command name points the user to its `--help`.
    Usage {
        /// The command the arguments were for (empty for the top level).
        command: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The command failed (file missing, invalid model, input does not fit, …).
    Failed(String),
}

impl CliError {
    /// A usage error of `command`.
    pub fn usage(command: &'static str, message: impl Into<String>) -> CliError {
        CliError::Usage { command, message: message.into() }
    }

    /// A failure.
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError::Failed(message.into())
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage { .. } => EXIT_USAGE,
            CliError::Failed(_) => EXIT_FAILURE,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage { command, message } => {
                let sep = if command.is_empty() { "" } else { " " };
                write!(f, "{message}\n(see 'temper-run{sep}{command} --help')")
            }
            CliError::Failed(m) => f.write_str(m),
        }
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

const TOP_HELP: &str = "\
temper-run: inspect, run, evaluate and benchmark temper .tmf INT8 models

Usage: temper-run [-v] [-q] <COMMAND> MODEL.tmf [OPTIONS]

Commands:
  info   show the model: metadata, ops, tensors, inputs/outputs, memory plan, CPU kernel path
  run    run the model on NPY input(s) and write the dequantized output(s)
  eval   top-1 accuracy on a labeled dataset (IDX, gzip'd IDX, NPY, or a dataset spec)
  bench  load time, latency (median/p90), throughput and peak memory
  soak   long run on a dataset: outputs identical to the first pass, no memory growth
  help   show the help of a command

Global options:
  -v, --verbose   print runtime log messages (also TEMPER_LOG=info|debug|trace)
  -q, --quiet     no progress and no warnings on stderr (also after the command)
  -h, --help      this help (or 'temper-run <COMMAND> --help')
  -V, --version   print the version

Environment:
  TEMPER_KERNELS=<level>  cap the kernel path (scalar, avx2, avxvnni, avx512vnni, neon,
                          dotprod, i8mm); --kernels overrides it
  TEMPER_FMNIST_DIR       where 'fashion-mnist:*' dataset specs are read from

Every command takes --json: the result as one JSON object on stdout. Progress goes to stderr
only when it is a terminal. Accuracies are percentages (91.54%).

Exit status: 0 success, 1 failure (missing/invalid file, input does not fit), 2 bad arguments.
";

/// A minimal stderr logger for the `log` facade.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("[{} {}] {}", record.level(), record.target(), record.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

fn init_logging(verbose: bool) {
    let from_env = std::env::var("TEMPER_LOG").ok().and_then(|v| match v.trim().to_ascii_lowercase().as_str() {
        "error" => Some(log::LevelFilter::Error),
        "warn" => Some(log::LevelFilter::Warn),
        "info" => Some(log::LevelFilter::Info),
        "debug" => Some(log::LevelFilter::Debug),
        "trace" => Some(log::LevelFilter::Trace),
        "off" => Some(log::LevelFilter::Off),
        _ => None,
    });
    let level = if verbose {
        log::LevelFilter::Info.max(from_env.unwrap_or(log::LevelFilter::Off))
    } else {
        from_env.unwrap_or(log::LevelFilter::Off)
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

fn dispatch(argv: &[String]) -> CliResult {
    let mut rest = argv;
    let (mut verbose, mut quiet) = (false, false);
    loop {
        match rest.first().map(String::as_str) {
            Some("-v" | "--verbose") => verbose = true,
            Some("-q" | "--quiet") => quiet = true,
            _ => break,
        }
        rest = &rest[1..];
    }
    init_logging(verbose);
    let Some(cmd) = rest.first() else {
        print!("{TOP_HELP}");
        return Err(CliError::usage("", "no command given"));
    };
    // A `--quiet` before the command is passed on to it (every command's parser takes it).
    let mut tail = rest[1..].to_vec();
    if quiet {
        tail.insert(0, "--quiet".to_string());
    }
    let tail = tail.as_slice();
    match cmd.as_str() {
        "info" => info::main(tail),
        "run" => run::main(tail),
        "eval" => eval::main(tail),
        "bench" => bench::main(tail),
        "soak" => soak::main(tail),
        "-h" | "--help" => {
            print!("{TOP_HELP}");
            Ok(())
        }
        "help" => match tail.first().map(String::as_str) {
            None => {
                print!("{TOP_HELP}");
                Ok(())
            }
            Some("info") => info::main(&["--help".to_string()]),
            Some("run") => run::main(&["--help".to_string()]),
            Some("eval") => eval::main(&["--help".to_string()]),
            Some("bench") => bench::main(&["--help".to_string()]),
            Some("soak") => soak::main(&["--help".to_string()]),
            Some(other) => Err(CliError::usage("", format!("unknown command '{other}' (info, run, eval, bench, soak)"))),
        },
        "-V" | "--version" => {
            println!("temper-run {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        other if other.starts_with('-') => Err(CliError::usage("", format!("unknown option '{other}' before the command"))),
        other => Err(CliError::usage("", format!("unknown command '{other}' (info, run, eval, bench, soak)"))),
    }
}

/// Exit code of a command whose standard output was closed by its reader (as shells report a
/// process killed by SIGPIPE).
const EXIT_BROKEN_PIPE: i32 = 141;

/// `print!` panics when standard output is a closed pipe (Rust ignores SIGPIPE): end quietly
/// instead, as a command killed by SIGPIPE would (`temper-run bench … | head -1`).
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload().downcast_ref::<String>().map(String::as_str).or_else(|| info.payload().downcast_ref::<&str>().copied());
        if msg.is_some_and(|m| m.starts_with("failed printing to stdout") && m.contains("Broken pipe")) {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let argv: Vec<String> = match std::env::args_os().skip(1).map(|a| a.into_string()).collect::<Result<Vec<_>, _>>() {
        Ok(v) => v,
        Err(bad) => {
            eprintln!("temper-run: error: argument is not valid UTF-8: {}", bad.to_string_lossy());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match dispatch(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("temper-run: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
