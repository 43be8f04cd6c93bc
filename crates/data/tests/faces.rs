//! The face data pipeline on real data: AT&T faces (identity folders, grey PGM), LFW
//! (pairs, identity-disjoint splits, landmarks, the crop cache) and its bad-input behaviour.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use facerec_data::align::{hwc_to_chw, Template};
use facerec_data::cache::{aligned_crop, build, write_crops, CropCache};
use facerec_data::dataset::FaceDataset;
use facerec_data::landmarks::{LandmarkFile, OnBad};
use facerec_data::lfw::{disjoint_train_set, Pairs};
use facerec_data::loader::{Loader, LoaderConfig};
use facerec_data::paths::require;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn lfw() -> Result<(PathBuf, LandmarkFile)> {
    let lfw = require("lfw")?;
    let lms = LandmarkFile::read(&lfw.join("landmarks_5pt.tsv"), OnBad::Fail)?;
    Ok((lfw, lms))
}

#[test]
fn att_faces_identity_folders_with_grey_pgm() -> Result {
    let root = require("att_faces")?;
    let d = FaceDataset::from_folders(&root)?;
    assert_eq!((d.num_identities(), d.len()), (40, 400));
    assert_eq!(&d.identities[..3], ["s1", "s10", "s11"]);
    assert!(d.samples.iter().filter(|s| s.label == 0).all(|s| s.path.starts_with("s1")));
    let img = facerec_data::image_io::read_rgb(&d.image_path(&d.samples[0]))?;
    // The copy in ../shared/data is AT&T at quarter scale (23 x 28 instead of 92 x 112).
    assert_eq!((img.width(), img.height()), (23, 28));
    assert!(img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]), "grey replicated to RGB");
    Ok(())
}

#[test]
fn lfw_pairs_folds_are_identity_disjoint_and_the_training_split_avoids_them() -> Result {
    let (lfw, lms) = lfw()?;
    let pairs = Pairs::read(&lfw.join("pairs.txt"))?;
    assert_eq!((pairs.folds, pairs.per_fold, pairs.pairs.len()), (10, 300, 6000));
    assert_eq!(pairs.pairs.iter().filter(|p| p.same).count(), 3000);
    for i in 0..10 {
        for j in i + 1..10 {
            let (a, b) = (pairs.identities_in(&[i]), pairs.identities_in(&[j]));
            assert!(a.is_disjoint(&b), "folds {i} and {j} share identities");
        }
    }
    pairs.check_images(&lfw.join("images"), &(0..10).collect::<Vec<_>>())?;

    let all = FaceDataset::from_folders(&lfw.join("images"))?;
    assert_eq!((all.len(), all.num_identities()), (13233, 5749));
    assert_eq!(lms.entries.len(), 13233);
    let test_folds = [0, 1, 2, 3, 4];
    let train = disjoint_train_set(&all, &pairs, &test_folds, 2);
    let test_ids = pairs.identities_in(&test_folds);
    let train_ids: HashSet<String> = train.identities.iter().cloned().collect();
    assert!(train_ids.is_disjoint(&test_ids), "training identities appear in test pairs");
    for s in &train.samples {
        assert!(!test_ids.contains(&facerec_data::lfw::identity_of(&s.path)));
    }
    // ../shared/README.md: about 900 identities with >= 2 images, about 5,100 images.
    assert!((800..1000).contains(&train.num_identities()), "{} identities", train.num_identities());
    assert!((4500..5700).contains(&train.len()), "{} images", train.len());
    // Leave-one-fold-out: fold 3 alone.
    let loo = disjoint_train_set(&all, &pairs, &[3], 2);
    assert!(loo.identities.iter().all(|n| !pairs.identities_in(&[3]).contains(n)));
    assert!(loo.len() > train.len());
    Ok(())
}

/// A small dataset of 3 LFW identities copied into a temporary folder, with its landmarks.
fn small_copy(dir: &Path) -> Result<(FaceDataset, LandmarkFile)> {
    let (lfw, lms) = lfw()?;
    let mut rows = Vec::new();
    for name in ["Aaron_Peirsol", "Abdullah_Gul", "Adrien_Brody"] {
        std::fs::create_dir_all(dir.join(name))?;
        for i in 1..=3 {
            let rel = facerec_data::lfw::image_path(name, i);
            std::fs::copy(lfw.join("images").join(&rel), dir.join(&rel))?;
            rows.push((rel.clone(), lms.entries[&rel].clone()));
        }
    }
    let lm_path = dir.join("landmarks.tsv");
    LandmarkFile::write(&lm_path, &rows)?;
    Ok((FaceDataset::from_folders(dir)?, LandmarkFile::read(&lm_path, OnBad::Fail)?))
}

#[test]
fn crop_cache_holds_the_aligned_crops_and_feeds_the_loader() -> Result {
    let dir = tempfile::tempdir()?;
    let (ds, lms) = small_copy(&dir.path().join("images"))?;
    let cache_dir = dir.path().join("cache");
    let count = std::sync::atomic::AtomicU64::new(0);
    let report = build(&ds, &lms, Template::CaffeFace, &cache_dir, OnBad::Fail, &|n| {
        count.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    })?;
    assert_eq!((report.written, count.into_inner()), (9, 9));
    let cache = CropCache::open(&cache_dir)?;
    assert_eq!(cache.index.shape, [3, 112, 96]);
    let expected = hwc_to_chw(&aligned_crop(&ds, &ds.samples[4], &lms, Template::CaffeFace)?, 112, 96);
    let source = Arc::new(cache.into_source()?);
    assert_eq!(source.image(4), &expected[..]);
    // Reopening with the same inputs does not rebuild; other inputs do.
    let (_, rebuilt) = CropCache::open_or_build(&ds, &lms, Template::CaffeFace, &cache_dir, OnBad::Fail, &|_| {})?;
    assert!(rebuilt.is_none());
    let (c, rebuilt) = CropCache::open_or_build(&ds, &lms, Template::Insightface, &cache_dir, OnBad::Fail, &|_| {})?;
    assert!(rebuilt.is_some());
    assert_eq!(c.index.shape, [3, 112, 112]);

    let cfg = LoaderConfig { rank_batch: 4, flip: true, ..Default::default() };
    let batch = Loader::new(source.clone(), &cfg, 0, 0)?.next().unwrap()?;
    assert_eq!(batch.images.size(), [4, 3, 112, 96]);
    let max = f64::try_from(batch.images.abs().max())?;
    assert!(max <= 127.5 / 128.0 + 1e-6, "normalised to (p - 127.5) / 128");

    // Crops as files, same layout.
    let out = dir.path().join("aligned");
    let r = write_crops(&ds, &lms, Template::CaffeFace, &out, true, OnBad::Fail, &|_| {})?;
    assert_eq!(r.written, 9);
    let png = facerec_data::image_io::read_rgb(&out.join("Abdullah_Gul/Abdullah_Gul_0002.png"))?;
    assert_eq!((png.width(), png.height()), (96, 112));
    Ok(())
}

#[test]
fn corrupt_images_missing_landmarks_and_degenerate_points_fail_or_are_skipped() -> Result {
    let dir = tempfile::tempdir()?;
    let images = dir.path().join("images");
    let (_, mut lms) = small_copy(&images)?;
    // 1. a truncated JPEG
    let broken = images.join("Abdullah_Gul/Abdullah_Gul_0002.jpg");
    let bytes = std::fs::read(&broken)?;
    std::fs::write(&broken, &bytes[..bytes.len() / 3])?;
    // 2. an image without landmarks
    std::fs::copy(images.join("Aaron_Peirsol/Aaron_Peirsol_0001.jpg"), images.join("Aaron_Peirsol/extra.jpg"))?;
    // 3. degenerate landmarks
    let degenerate = PathBuf::from("Adrien_Brody/Adrien_Brody_0003.jpg");
    lms.entries.get_mut(&degenerate).unwrap().landmarks.0 = [[50.0, 50.0]; 5];
    // 4. collinear landmarks: all five on the line y = x / 2 + 100
    let collinear = PathBuf::from("Adrien_Brody/Adrien_Brody_0002.jpg");
    lms.entries.get_mut(&collinear).unwrap().landmarks.0 = [[100.0, 150.0], [120.0, 160.0], [110.0, 155.0], [90.0, 145.0], [130.0, 165.0]];
    let ds = FaceDataset::from_folders(&images)?;
    assert_eq!(ds.len(), 10);

    let err = build(&ds, &lms, Template::CaffeFace, &dir.path().join("c"), OnBad::Fail, &|_| {})
        .err()
        .ok_or("a corrupt image must fail the build")?
        .to_string();
    // Samples are in sorted order: Aaron_Peirsol/extra.jpg comes first.
    assert!(err.contains("extra.jpg") && err.contains("no landmarks"), "{err}");
    assert!(!dir.path().join("c/index.json").exists(), "a failed build leaves no cache");

    let report = build(&ds, &lms, Template::CaffeFace, &dir.path().join("c"), OnBad::Skip, &|_| {})?;
    assert_eq!(report.written, 6);
    let reasons: Vec<String> = report.skipped.iter().map(|e| e.to_string()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("Abdullah_Gul_0002.jpg") && r.contains("cannot decode")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("Adrien_Brody_0003.jpg") && r.contains("degenerate")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("Adrien_Brody_0002.jpg") && r.contains("one line")), "{reasons:?}");
    assert_eq!(CropCache::open(&dir.path().join("c"))?.len(), 6);
    Ok(())
}
