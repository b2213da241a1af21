//! The `esmd` binary. Everything, the command line included, lives in the library.

fn main() -> std::process::ExitCode {
    esmd::cli::main()
}
