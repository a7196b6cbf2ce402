//! `kubectl regcred diagnose ...`: kubectl runs this binary, found on PATH as `kubectl-regcred`.

use clap::Parser;
use regcred::cli::{KubectlCli, KubectlCommand};

fn main() -> std::process::ExitCode {
    match KubectlCli::parse().command {
        KubectlCommand::Diagnose(args) => regcred::diagnosis::cli::main(args),
    }
}
