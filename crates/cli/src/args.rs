//! Argument types that several subcommands share.

use facerec_data::align::Template;

/// `--template`: the crop layout.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TemplateArg {
    CaffeFace,
    Insightface,
}

impl From<TemplateArg> for Template {
    fn from(t: TemplateArg) -> Self {
        match t {
            TemplateArg::CaffeFace => Template::CaffeFace,
            TemplateArg::Insightface => Template::Insightface,
        }
    }
}

