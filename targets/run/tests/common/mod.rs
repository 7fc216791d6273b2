//! What the temper-run test binaries share: the command that runs the binary under test.

use std::process::Command;

/// The `temper-run` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_temper-run");

/// The binary as a command, without `TEMPER_LOG`; with `TEMPER_RUN_RUNNER` set (e.g.
/// `qemu-arm -L /usr/arm-linux-gnueabihf` when the tests themselves run under qemu-user for a
/// cross target), through that runner.
pub fn command() -> Command {
    let runner = std::env::var("TEMPER_RUN_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut cmd = match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    cmd.env_remove("TEMPER_LOG");
    cmd
}
