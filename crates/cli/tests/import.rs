//! `facerec import` end to end: the published MobileFaceNet checkpoint (torch.save's legacy
//! format) becomes a model file that `embed` uses; a wrong architecture, a truncated file and a
//! file that is no checkpoint are clear errors that write nothing.

use std::path::Path;

mod common;
use common::{facerec, text, Result};

fn checkpoint() -> Result<std::path::PathBuf> {
    Ok(facerec_data::paths::require("pretrained")?.join("mobilefacenet_casia/mobilefacenet_casia_068.ckpt"))
}

#[test]
fn the_published_checkpoint_imports_and_embed_uses_it() -> Result {
    let dir = tempfile::tempdir()?;
    let ckpt = checkpoint()?;
    let out = facerec(&["import", ckpt.to_str().unwrap(), "--backbone", "mobilefacenet", "--out", "m/mfn.safetensors"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("283 tensors") && said.contains("50 num_batches_tracked") && said.contains("epoch 68"), "{said}");
    // Two images each of two people: the same person's are the closer pairs.
    let lfw = facerec_data::paths::require("lfw")?;
    std::fs::write(dir.path().join("list.txt"), "Colin_Powell/Colin_Powell_0001.jpg\nColin_Powell/Colin_Powell_0002.jpg\nTony_Blair/Tony_Blair_0001.jpg\nTony_Blair/Tony_Blair_0002.jpg\n")?;
    let out = facerec(
        &["embed", "--model", "m/mfn.safetensors", "--images", lfw.join("images").to_str().unwrap(), "--list", "list.txt",
          "--landmarks", lfw.join("landmarks_5pt.tsv").to_str().unwrap(), "--normalize", "--out", "e.npy", "-q"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let e = facerec_data::npy::read::<f32, ndarray::Ix2>(&dir.path().join("e.npy"))?;
    assert_eq!(e.dim(), (4, 128));
    let cos = |a: usize, b: usize| e.row(a).dot(&e.row(b));
    let (same, diff) = (cos(0, 1).min(cos(2, 3)), cos(0, 2).max(cos(0, 3)).max(cos(1, 2)).max(cos(1, 3)));
    assert!(same > diff + 0.2, "same-person cosines {same}, different-person up to {diff}");
    Ok(())
}

/// Runs an import that must fail; returns its message after checking that nothing was written.
fn failed_import(dir: &Path, ckpt: &Path, backbone: &str) -> String {
    let out = facerec(&["import", ckpt.to_str().unwrap(), "--backbone", backbone, "--out", "x.safetensors"], dir);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!dir.join("x.safetensors").exists(), "a failed import wrote its output");
    text(&out)
}

#[test]
fn wrong_architecture_truncation_and_non_checkpoints_are_clear_errors() -> Result {
    let dir = tempfile::tempdir()?;
    let ckpt = checkpoint()?;
    let msg = failed_import(dir.path(), &ckpt, "face_resnet");
    assert!(msg.contains("does not fit backbone face_resnet") && msg.contains("missing [conv1a.bias") && msg.contains("unexpected [conv1.conv.weight"), "{msg}");
    let msg = failed_import(dir.path(), &ckpt, "no_such_net");
    assert!(msg.contains("unknown backbone `no_such_net`") && msg.contains("`mobilefacenet`"), "{msg}");
    // The same layers for 112x112 input: only the global depthwise kernel differs.
    let out = facerec(&["import", ckpt.to_str().unwrap(), "--backbone", "mobilefacenet", "--set", "input_size=[112,112]", "--out", "x.safetensors"], dir.path());
    assert!(!out.status.success());
    assert!(text(&out).contains("shape mismatch linear7.conv.weight: file [512, 1, 7, 6], model [512, 1, 7, 7]"), "{}", text(&out));

    let bytes = std::fs::read(&ckpt)?;
    let cut = dir.path().join("cut.ckpt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2])?;
    let msg = failed_import(dir.path(), &cut, "mobilefacenet");
    assert!(msg.contains("cut.ckpt") && msg.contains("cut short") && msg.contains("the file ends at byte"), "{msg}");

    let notes = dir.path().join("notes.pth");
    std::fs::write(&notes, "weights are elsewhere\n")?;
    let msg = failed_import(dir.path(), &notes, "mobilefacenet");
    assert!(msg.contains("notes.pth") && msg.contains("not a PyTorch checkpoint: it is a text file"), "{msg}");
    Ok(())
}
