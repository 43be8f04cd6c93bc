//! insightface formats round-tripped through real LFW images and checked by the reference
//! readers' logic in Python (`scripts/reference/check_insightface.py`, stdlib + numpy only).

use std::path::{Path, PathBuf};
use std::process::Command;

use facerec_data::dataset::FaceDataset;
use facerec_data::insightface::{write_recordio, EvalBin, RecordIo, RecordIoSource};
use facerec_data::loader::Source;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn python_check(args: &[&str]) -> Result<String> {
    let python = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference/check_insightface.py");
    let out = Command::new(&python).arg(script).args(args).output().map_err(|e| format!("{python}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    Ok(stdout)
}

/// The images of a few LFW identities, as (path, label) sorted by label.
fn lfw_subset() -> Result<Vec<(PathBuf, i64)>> {
    let lfw = facerec_data::paths::require("lfw")?;
    let all = FaceDataset::from_folders(&lfw.join("images"))?;
    let some = all.filter_identities(|n| ["Aaron_Peirsol", "Abdullah_Gul", "Adrien_Brody", "Al_Gore"].contains(&n), 1);
    Ok(some.samples.iter().map(|s| (some.image_path(s), s.label)).collect())
}

#[test]
fn recordio_written_from_lfw_reads_back_here_and_in_python() -> Result {
    let dir = tempfile::tempdir()?;
    let subset = lfw_subset()?;
    let images: Vec<(Vec<u8>, i64)> =
        subset.iter().map(|(p, l)| Ok((std::fs::read(p)?, *l))).collect::<std::io::Result<_>>()?;
    let rec_path = dir.path().join("train.rec");
    write_recordio(&rec_path, &images)?;
    let expect = dir.path().join("expect.txt");
    std::fs::write(&expect, subset.iter().map(|(p, l)| format!("{} {l}\n", p.display())).collect::<String>())?;
    let out = python_check(&["--rec", rec_path.to_str().unwrap(), "--expect", expect.to_str().unwrap()])?;
    assert!(out.contains(&format!("ok: {} images of 4 identities", subset.len())), "{out}");

    let rec = RecordIo::open(&rec_path)?;
    assert_eq!((rec.images.len(), rec.num_identities), (subset.len(), 4));
    for (i, (bytes, label)) in images.iter().enumerate() {
        assert_eq!(&rec.image(i)?, &(bytes.clone(), *label));
    }
    let source = RecordIoSource::new(rec)?;
    assert_eq!(source.image_shape(), [3, 250, 250]);
    let (x, y) = source.load(&[0, 3], &[false, true])?;
    assert_eq!(x.size(), [2, 3, 250, 250]);
    assert_eq!(Vec::<i64>::try_from(&y)?, vec![images[0].1, images[3].1]);

    // A damaged index is a clear error.
    std::fs::write(rec_path.with_extension("idx"), "0\t0\n1\tseven\n")?;
    let err = RecordIo::open(&rec_path).err().ok_or("bad idx accepted")?.to_string();
    assert!(err.contains("train.idx:2:"), "{err}");
    Ok(())
}

#[test]
fn eval_bin_written_from_lfw_pairs_reads_back_here_and_in_python() -> Result {
    let dir = tempfile::tempdir()?;
    let subset = lfw_subset()?;
    // pairs: (0, 1) same, (0, last) different, ...
    let pairs: Vec<(usize, usize)> = vec![(0, 1), (0, subset.len() - 1), (2, 3), (1, subset.len() - 2)];
    let mut bin = EvalBin { images: Vec::new(), issame: Vec::new() };
    let mut expect = String::new();
    for &(a, b) in &pairs {
        let same = subset[a].1 == subset[b].1;
        bin.images.push(std::fs::read(&subset[a].0)?);
        bin.images.push(std::fs::read(&subset[b].0)?);
        bin.issame.push(same);
        expect.push_str(&format!("{} {} {}\n", subset[a].0.display(), subset[b].0.display(), u8::from(same)));
    }
    let path = dir.path().join("lfw.bin");
    bin.write(&path)?;
    let list = dir.path().join("pairs.txt");
    std::fs::write(&list, expect)?;
    let out = python_check(&["--bin", path.to_str().unwrap(), "--expect-bin", list.to_str().unwrap()])?;
    assert!(out.contains("ok: 4 pairs"), "{out}");
    assert_eq!(EvalBin::read(&path)?, bin);
    Ok(())
}

#[test]
fn a_bin_written_by_python_pickle_reads() -> Result {
    // Python writes with its own pickler (protocol 2 and 4) and facerec reads it.
    let dir = tempfile::tempdir()?;
    let python = std::env::var("FACEREC_PYTHON").unwrap_or_else(|_| ".deps/venv/bin/python".into());
    for proto in [2, 4] {
        let path = dir.path().join(format!("p{proto}.bin"));
        let code = format!(
            "import pickle; pickle.dump(([b'\\xff\\xd8abc', b'x' * 300] * 2, [True, False]), open('{}', 'wb'), protocol={proto})",
            path.display()
        );
        assert!(Command::new(&python).args(["-c", &code]).status()?.success());
        let bin = EvalBin::read(&path)?;
        assert_eq!(bin.issame, vec![true, false]);
        assert_eq!(bin.images[1], vec![b'x'; 300]);
    }
    Ok(())
}

/// A damaged `.rec` or `.idx` is an error that names the file and says what was expected, at
/// open time (the header record and the identity records are read then) or, for an image
/// record, when its batch is loaded; never a panic or a silent skip. Also a 112x112 set cut to
/// a 112x96 model's input, and a size that cannot be.
#[test]
fn damaged_rec_and_idx_files_are_clear_errors() -> Result {
    let dir = tempfile::tempdir()?;
    let png = |shade: u8| -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        image::RgbImage::from_pixel(112, 112, image::Rgb([shade, 100, 50])).write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
        Ok(bytes)
    };
    let rec = dir.path().join("train.rec");
    write_recordio(&rec, &[(png(10)?, 0), (png(20)?, 0), (png(30)?, 1)])?;
    let (rec_bytes, idx_text) = (std::fs::read(&rec)?, std::fs::read_to_string(rec.with_extension("idx"))?);
    let open_err = |rec_bytes: &[u8], idx: &str| -> Result<String> {
        std::fs::write(&rec, rec_bytes)?;
        std::fs::write(rec.with_extension("idx"), idx)?;
        Ok(match RecordIo::open(&rec) {
            Ok(_) => "opened".into(),
            Err(e) => e.to_string(),
        })
    };
    // An .idx line that is not `key<TAB>offset`: the file and the line.
    let err = open_err(&rec_bytes, &idx_text.replacen("1\t", "one\t", 1))?;
    assert!(err.contains("train.idx") && err.contains(":2:") && err.contains("integers"), "{err}");
    // An offset into the middle of a record: no RecordIO magic there.
    let bad_offset = idx_text.lines().map(|l| if l.starts_with("0\t") { "0\t5".to_owned() } else { l.to_owned() }).collect::<Vec<_>>().join("\n");
    let err = open_err(&rec_bytes, &bad_offset)?;
    assert!(err.contains("train.rec") && err.contains("record 0") && err.contains("magic"), "{err}");
    // The header record's payload overwritten (its label count past the record's end).
    let mut garbled = rec_bytes.clone();
    garbled[8..12].copy_from_slice(&1000u32.to_le_bytes());
    let err = open_err(&garbled, &idx_text)?;
    assert!(err.contains("train.rec") && err.contains("IRHeader announces 1000 labels"), "{err}");
    // A truncated file: the identity records are missing.
    let err = open_err(&rec_bytes[..rec_bytes.len() - 40], &idx_text)?;
    assert!(err.contains("train.rec") && (err.contains("truncated") || err.contains("past the end")), "{err}");
    // An intact set: a 112x96 model reads its caffe-face columns, a 96x96 one is refused.
    assert_eq!(open_err(&rec_bytes, &idx_text)?, "opened");
    let source = RecordIoSource::new(RecordIo::open(&rec)?)?.fit_to([3, 112, 96])?;
    let (x, y) = source.load(&[0, 2], &[false, true])?;
    assert_eq!((x.size(), Vec::<i64>::try_from(&y)?), (vec![2, 3, 112, 96], vec![0, 1]));
    let err = RecordIoSource::new(RecordIo::open(&rec)?)?.fit_to([3, 96, 96]).err().ok_or("96x96 accepted")?.to_string();
    assert!(err.contains("train.rec") && err.contains("112x112") && err.contains("96x96"), "{err}");
    Ok(())
}
