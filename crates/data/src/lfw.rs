//! Labeled Faces in the Wild: the View-2 `pairs.txt` (10 folds of 300 same-person and 300
//! different-person pairs) and identity-disjoint training splits for the protocols of
//! `../shared/README.md`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::dataset::FaceDataset;
use crate::error::{DataError, Result};

/// One verification pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Image paths relative to the `images/` root: `Name/Name_0001.jpg`.
    pub a: PathBuf,
    pub b: PathBuf,
    pub same: bool,
    /// Fold, 0-based.
    pub fold: usize,
}

/// A parsed pairs file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairs {
    pub folds: usize,
    pub per_fold: usize,
    pub pairs: Vec<Pair>,
}

/// The path LFW uses for image `index` (1-based) of `name`.
pub fn image_path(name: &str, index: u32) -> PathBuf {
    PathBuf::from(name).join(format!("{name}_{index:04}.jpg"))
}

/// The identity an LFW image path belongs to (its folder).
pub fn identity_of(path: &Path) -> String {
    path.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
}

impl Pairs {
    /// Reads `pairs.txt`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses the View-2 format: a header `folds per_fold`, then per fold `per_fold` lines
    /// `name i j` (same person) followed by `per_fold` lines `name1 i name2 j` (different).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| DataError::format(path, "empty pairs file"))?;
        let h: Vec<&str> = header.split_whitespace().collect();
        let parse_count = |s: &str| s.parse::<usize>().ok().filter(|&n| n > 0 && n < 1_000_000);
        let (folds, per_fold) = match h[..] {
            [f, n] => match (parse_count(f), parse_count(n)) {
                (Some(f), Some(n)) => (f, n),
                _ => return Err(DataError::line(path, 1, format!("header {header:?}: expected two positive counts, e.g. `10 300`"))),
            },
            _ => return Err(DataError::line(path, 1, format!("header {header:?}: expected `folds pairs_per_class`"))),
        };
        let mut pairs = Vec::with_capacity(folds * per_fold * 2);
        for fold in 0..folds {
            for same in [true, false] {
                for _ in 0..per_fold {
                    let (i, line) = lines.next().ok_or_else(|| {
                        DataError::format(path, format!(
                            "ends early: fold {} needs {per_fold} {} pairs, the header promised {folds} folds",
                            fold + 1,
                            if same { "same-person" } else { "different-person" }
                        ))
                    })?;
                    let f: Vec<&str> = line.split_whitespace().collect();
                    let index = |s: &str| -> Result<u32> {
                        s.parse::<u32>().ok().filter(|&n| n >= 1).ok_or_else(|| {
                            DataError::line(path, i + 1, format!("{s:?} is not an image number (1, 2, ...)"))
                        })
                    };
                    let pair = match (same, &f[..]) {
                        (true, [name, a, b]) => Pair { a: image_path(name, index(a)?), b: image_path(name, index(b)?), same, fold },
                        (false, [n1, a, n2, b]) => Pair { a: image_path(n1, index(a)?), b: image_path(n2, index(b)?), same, fold },
                        _ => {
                            let expected = if same { "`name i j` (3 fields)" } else { "`name1 i name2 j` (4 fields)" };
                            return Err(DataError::line(path, i + 1, format!(
                                "fold {} expects {expected} here, got {} fields",
                                fold + 1,
                                f.len()
                            )));
                        }
                    };
                    pairs.push(pair);
                }
            }
        }
        if let Some((i, _)) = lines.next() {
            return Err(DataError::line(path, i + 1, format!("more lines than the header's {folds} x {per_fold} x 2 pairs")));
        }
        Ok(Pairs { folds, per_fold, pairs })
    }

    /// Identities in the pairs of the given folds (0-based).
    pub fn identities_in(&self, folds: &[usize]) -> HashSet<String> {
        self.pairs
            .iter()
            .filter(|p| folds.contains(&p.fold))
            .flat_map(|p| [identity_of(&p.a), identity_of(&p.b)])
            .collect()
    }

    /// The pairs of the given folds.
    pub fn of_folds(&self, folds: &[usize]) -> Vec<Pair> {
        self.pairs.iter().filter(|p| folds.contains(&p.fold)).cloned().collect()
    }

    /// The pairs of `folds` in the order an insightface `.bin` should hold them. insightface
    /// scores a `.bin` in 10 folds of consecutive pairs; each fold of a pairs file is all its
    /// same-person pairs, then all its different-person ones. With 10 folds the file order is
    /// kept (each tenth of the `.bin` is one fold, as in insightface's own lfw.bin); with any
    /// other number, each fold's pairs alternate same, different, same, ... so that every run
    /// of consecutive pairs holds both kinds equally (within one) and each tenth has a
    /// threshold to learn and a false-accept rate to measure.
    pub fn bin_order(&self, folds: &[usize]) -> Vec<Pair> {
        if folds.len() == 10 {
            return self.of_folds(folds);
        }
        let mut out = Vec::new();
        for &fold in folds {
            let of_kind = |same: bool| self.pairs.iter().filter(move |p| p.fold == fold && p.same == same);
            let (mut same, mut different) = (of_kind(true), of_kind(false));
            loop {
                match (same.next(), different.next()) {
                    (None, None) => break,
                    (a, b) => out.extend(a.into_iter().chain(b).cloned()),
                }
            }
        }
        out
    }

    /// Every image the pairs of `folds` refer to, sorted, without repeats.
    pub fn images(&self, folds: &[usize]) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.of_folds(folds).into_iter().flat_map(|p| [p.a, p.b]).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Checks that every image of the given folds exists under `root`; the error lists the
    /// missing ones (never skipped silently).
    pub fn check_images(&self, root: &Path, folds: &[usize]) -> Result<()> {
        let missing: Vec<String> =
            self.images(folds).into_iter().filter(|p| !root.join(p).is_file()).map(|p| p.display().to_string()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(DataError::Missing {
            path: root.to_path_buf(),
            hint: format!(
                ": {} image(s) of the pairs are missing: {}{}",
                missing.len(),
                missing.iter().take(10).cloned().collect::<Vec<_>>().join(", "),
                if missing.len() > 10 { ", ..." } else { "" }
            ),
        })
    }
}

/// The identity-disjoint training set: identities of `dataset` that occur in no pair of
/// `test_folds`, with at least `min_images` images each.
pub fn disjoint_train_set(dataset: &FaceDataset, pairs: &Pairs, test_folds: &[usize], min_images: usize) -> FaceDataset {
    let test = pairs.identities_in(test_folds);
    dataset.filter_identities(|name| !test.contains(name), min_images)
}

/// 1-based folds to 0-based, checked against the pairs file's fold count.
pub fn zero_based_folds(folds: &[usize], available: usize, key: &str) -> std::result::Result<Vec<usize>, String> {
    if folds.is_empty() {
        return Err(format!("{key}: give at least one fold"));
    }
    folds
        .iter()
        .map(|&f| if (1..=available).contains(&f) { Ok(f - 1) } else { Err(format!("{key}: fold {f} is not in 1..={available}")) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> String {
        "2\t1\nA\t1\t2\nB\t1\tC\t2\nD\t3\t4\nE\t1\tF\t1\n".to_owned()
    }

    #[test]
    fn parses_folds_in_order() {
        let p = Pairs::parse(&tiny(), Path::new("pairs.txt")).unwrap();
        assert_eq!((p.folds, p.per_fold, p.pairs.len()), (2, 1, 4));
        assert_eq!(p.pairs[0], Pair { a: "A/A_0001.jpg".into(), b: "A/A_0002.jpg".into(), same: true, fold: 0 });
        assert_eq!(p.pairs[1].b, PathBuf::from("C/C_0002.jpg"));
        assert!(!p.pairs[1].same);
        assert_eq!(p.pairs[3].fold, 1);
        let ids = p.identities_in(&[1]);
        assert_eq!(ids, HashSet::from(["D".to_string(), "E".into(), "F".into()]));
    }

    #[test]
    fn malformed_pairs_name_the_line() {
        let cases = [
            ("", "empty"),
            ("ten 300\n", "header"),
            ("2\t1\nA\t1\n", "pairs.txt:2: fold 1 expects `name i j`"),
            ("2\t1\nA\t1\t2\nB\t1\tC\n", "pairs.txt:3:"),
            ("2\t1\nA\tx\t2\n", "not an image number"),
            ("2\t1\nA\t0\t2\n", "not an image number"),
            ("2\t1\nA\t1\t2\nB\t1\tC\t2\n", "ends early"),
        ];
        for (text, expected) in cases {
            let err = Pairs::parse(text, Path::new("pairs.txt")).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let extra = format!("{}G\t1\t2\n", tiny());
        assert!(Pairs::parse(&extra, Path::new("p")).unwrap_err().to_string().contains("more lines"));
    }

    /// A pairs file of `folds` folds of `n` same and `n` different pairs, names unique per pair.
    fn synthetic(folds: usize, n: usize) -> Pairs {
        let mut text = format!("{folds}\t{n}\n");
        for f in 0..folds {
            (0..n).for_each(|i| text.push_str(&format!("S{f}_{i}\t1\t2\n")));
            (0..n).for_each(|i| text.push_str(&format!("D{f}_{i}\t1\tE{f}_{i}\t1\n")));
        }
        Pairs::parse(&text, Path::new("pairs.txt")).unwrap()
    }

    #[test]
    fn bin_order_balances_every_tenth_unless_there_are_ten_folds() {
        // Five LFW-like folds: written in file order, each tenth would be of one kind.
        let p = synthetic(5, 30);
        let folds = [0, 1, 2, 3, 4];
        let order = p.bin_order(&folds);
        let sorted = |v: Vec<Pair>| {
            let mut v: Vec<String> = v.iter().map(|p| format!("{:?}", p)).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(order.clone()), sorted(p.of_folds(&folds)), "the same pairs");
        for tenth in order.chunks(order.len() / 10) {
            assert_eq!(tenth.iter().filter(|p| p.same).count(), tenth.len() / 2);
        }
        assert!(p.of_folds(&folds).chunks(30).all(|t| t.iter().all(|q| q.same == t[0].same)), "file order is unbalanced");
        // Each fold's pairs stay together, folds in the order asked.
        let p3 = p.bin_order(&[3, 1]);
        assert!(p3[..60].iter().all(|q| q.fold == 3) && p3[60..].iter().all(|q| q.fold == 1));
        // Ten folds: the file's order, as insightface's own lfw.bin.
        let ten = synthetic(10, 3);
        let all: Vec<usize> = (0..10).collect();
        assert_eq!(ten.bin_order(&all), ten.of_folds(&all));
    }
}
