use clap::Parser;
use regcred::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", regcred::api::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
        Command::Reference => {
            print!("{}", regcred::api::reference_markdown());
            std::process::ExitCode::SUCCESS
        }
        Command::Version => {
            println!("regcred {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
        Command::Run(args) => regcred::operator::main(*args),
        Command::Diagnose(args) => regcred::diagnosis::cli::main(args),
    }
}
