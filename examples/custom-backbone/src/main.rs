//! `my-facerec`: the `facerec` command line with one more backbone (`tiny_mlp`, [`tiny_mlp`])
//! and one more loss (`smoothed_softmax`, [`smoothed_softmax`]), defined in this crate. Every
//! subcommand works with them: `my-facerec train configs/tiny_mnist.toml`, `my-facerec eval`,
//! `my-facerec embed` ...

mod smoothed_softmax;
mod tiny_mlp;

fn main() -> std::process::ExitCode {
    facerec_model::register_backbone::<tiny_mlp::TinyMlpConfig>();
    facerec_losses::register_loss::<smoothed_softmax::SmoothedSoftmaxConfig>();
    facerec::main()
}
