//! The `facerec` binary: [`facerec::main`] with the built-in backbones and losses.

fn main() -> std::process::ExitCode {
    facerec::main()
}
