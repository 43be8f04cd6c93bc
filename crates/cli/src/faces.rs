//! What the commands that read photos share: the MTCNN weights at their default place, and the
//! one detect-then-align path of `compare` and `embed`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use image::RgbImage;
use tch::Device;

use facerec_data::align::{align, Template};
use facerec_detect::mtcnn::{nearest_to_centre, Mtcnn};

/// Help text of the `--weights` options.
pub const WEIGHTS_HELP: &str = "Folder with MTCNN's pnet/rnet/onet.safetensors (made by scripts/setup.sh) \
    [default: data/mtcnn of the checkout: $FACEREC_REPO, else ./data, else the checkout whose \
    target/release holds this binary]";

/// MTCNN from `weights`, or from `data/mtcnn` found as [`facerec_data::paths::data_dir`] finds
/// it; the error says where it looked.
pub fn load_detector(weights: Option<&Path>, device: Device) -> anyhow::Result<Mtcnn> {
    let (dir, default) = match weights {
        Some(w) => (w.to_path_buf(), false),
        None => (facerec_data::paths::data_dir().join("mtcnn"), true),
    };
    Mtcnn::load(&dir, device).with_context(|| {
        format!(
            "loading MTCNN from {}{}",
            dir.display(),
            if default { format!(", the default of --weights{}", facerec_data::paths::relative_note(&dir)) } else { String::new() }
        )
    })
}

/// The face of `img` (read from `path`, named in errors) nearest its centre, aligned to
/// `template`: HWC RGB bytes of the template's size, or an error `<path>: no face found` when
/// MTCNN finds none.
pub fn detect_and_align(detector: &Mtcnn, img: &RgbImage, template: Template, path: &Path) -> anyhow::Result<Vec<u8>> {
    let faces = detector.detect(img).with_context(|| format!("detecting faces in {}", path.display()))?;
    let Some(face) = nearest_to_centre(&faces, img.width(), img.height()) else {
        bail!("{}: no face found", path.display());
    };
    align(img, &face.landmarks, template).with_context(|| format!("aligning the face of {}", path.display()))
}

/// The images `--images` (and `--list`) name, as every photo command reads them: see
/// [`facerec_data::inputs`].
pub fn select_images(images: &[PathBuf], list: Option<&Path>) -> anyhow::Result<facerec_data::dataset::FaceDataset> {
    let ds = facerec_data::dataset::FaceDataset::from_inputs(images, list).context("listing the images")?;
    tracing::info!("{} images of {} identities under {}", ds.len(), ds.num_identities(), ds.root.display());
    Ok(ds)
}

/// The `--images` help shared by the photo commands.
pub const IMAGES_HELP: &str = "Images: a folder (searched recursively), image files, or patterns such as \
    'photos/*.jpg' or 'photos/**/*.png'. Identities: the sub-folder an image is in \
    (<folder>/<identity>/<image>), or for an image directly in the folder its file stem (each photo \
    its own identity). Paths in landmark files and outputs are relative to the folder given, or to \
    the deepest folder holding all the files";
