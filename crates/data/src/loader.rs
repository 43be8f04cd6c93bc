//! Seeded, sharded, prefetching batch loading.
//!
//! The order of an epoch is a permutation drawn from `(seed, epoch)` alone, so a run that is
//! stopped and resumed at batch `k` of epoch `e` sees exactly the batches it would have seen.
//! With `world` ranks, each global batch of `world * rank_batch` consecutive samples of that
//! order is cut into `world` slices and rank `r` takes slice `r`: 2 ranks of batch B train on
//! the same samples per step as 1 rank of batch 2B. Flips (when on) are drawn per position
//! from the same seed.
//!
//! With `images_per_identity = K` the order is made of P x K batches instead (P = batch / K
//! identities, K images of each; see [`LoaderConfig::identity_order`]), for losses that need
//! several images of an identity in a batch (contrastive loss, center loss on small batches).
//!
//! A [`Source`] turns sample indices into a batch (decoding and augmenting in parallel on
//! rayon where it reads files); the [`Loader`] runs it on a background thread, `prefetch`
//! batches ahead of the training step, and hands CPU tensors to the training thread.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use crate::error::{DataError, Result};

/// Something that produces training batches from sample indices.
pub trait Source: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of classes (identities); labels are in `0..num_classes`.
    fn num_classes(&self) -> i64;
    /// The label of every sample, in index order, without decoding images.
    fn labels(&self) -> Vec<i64>;
    /// `[C, H, W]` of one image.
    fn image_shape(&self) -> [i64; 3];
    /// The images of `indices` as `[B, C, H, W]` floats (normalised), mirrored where `flips`
    /// says so, and their labels as `[B]` int64, on the CPU.
    fn load(&self, indices: &[usize], flips: &[bool]) -> Result<(Tensor, Tensor)>;
}

/// How batches are drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// Samples per batch on this rank: the config's global `optim.batch_size` divided by the
    /// world size.
    pub rank_batch: usize,
    pub shuffle: bool,
    /// Mirror each image with probability 1/2.
    pub flip: bool,
    pub seed: u64,
    /// This process's rank and the number of ranks.
    pub rank: usize,
    pub world: usize,
    /// Batches loaded ahead of the consumer.
    pub prefetch: usize,
    /// P x K batches: this many images of each identity in a batch, in runs of K consecutive
    /// samples (unset: a plain shuffle).
    pub images_per_identity: Option<usize>,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig { rank_batch: 64, shuffle: true, flip: false, seed: 0, rank: 0, world: 1, prefetch: 4, images_per_identity: None }
    }
}

impl LoaderConfig {
    /// Full batches per epoch (the incomplete last global batch is dropped so that every step
    /// has the same size on every rank).
    pub fn batches_per_epoch(&self, len: usize) -> usize {
        len / (self.rank_batch * self.world).max(1)
    }

    /// The sample order of `epoch` (identical on every rank).
    pub fn epoch_order(&self, len: usize, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        if self.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            rng.set_stream(epoch as u64);
            order.shuffle(&mut rng);
        }
        order
    }

    /// Flip decisions of `epoch` for each position of its order.
    pub fn epoch_flips(&self, len: usize, epoch: usize) -> Vec<bool> {
        if !self.flip {
            return vec![false; len];
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x9e37_79b9_7f4a_7c15);
        rng.set_stream(epoch as u64);
        (0..len).map(|_| rng.random::<bool>()).collect()
    }

    /// The P x K order of `epoch` for samples with these `labels`: `batches_per_epoch` global
    /// batches, each of P = global batch / K runs of K images of one identity, the P identities
    /// of a batch distinct. Drawn from `(seed, epoch)` alone, like [`LoaderConfig::epoch_order`].
    ///
    /// Each identity's images are shuffled and cut into runs of K; a last run short of K (or an
    /// identity with fewer than K images) is filled with other images of the identity drawn
    /// again, so every image appears in every epoch's runs. The runs are shuffled and dealt
    /// into batches, a run whose identity the batch already holds waiting for the next batch;
    /// when they run out before the epoch's batches are full, another round of runs is drawn.
    pub fn identity_order(&self, labels: &[i64], epoch: usize) -> Result<Vec<usize>> {
        let k = self.images_per_identity.unwrap_or(1).max(1);
        let global = self.rank_batch * self.world;
        let (p, batches) = (global / k, self.batches_per_epoch(labels.len()));
        let mut by_label: std::collections::BTreeMap<i64, Vec<usize>> = std::collections::BTreeMap::new();
        for (i, &l) in labels.iter().enumerate() {
            by_label.entry(l).or_default().push(i);
        }
        if !global.is_multiple_of(k) || by_label.len() < p {
            return Err(DataError::Invalid(format!(
                "P x K batches: a batch of {global} in runs of {k} needs {global} to be a multiple of {k} and at least {} identities; the data has {}",
                global / k,
                by_label.len()
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x5851_f42d_4c95_7f2d);
        rng.set_stream(epoch as u64);
        let mut order = Vec::with_capacity(batches * global);
        let mut pending: std::collections::VecDeque<(i64, Vec<usize>)> = std::collections::VecDeque::new();
        while order.len() < batches * global {
            if pending.len() < p {
                pending.extend(Self::runs(&by_label, k, &mut rng));
            }
            let mut batch: Vec<(i64, Vec<usize>)> = Vec::with_capacity(p);
            let mut waiting = Vec::new();
            while batch.len() < p {
                let Some(run) = pending.pop_front() else { break };
                if batch.iter().any(|(l, _)| *l == run.0) {
                    waiting.push(run);
                } else {
                    batch.push(run);
                }
            }
            for run in waiting.into_iter().rev() {
                pending.push_front(run);
            }
            if batch.len() < p {
                // Not enough distinct identities left in this round: put the batch back and
                // draw another round behind it.
                for run in batch.into_iter().rev() {
                    pending.push_front(run);
                }
                pending.extend(Self::runs(&by_label, k, &mut rng));
                continue;
            }
            order.extend(batch.into_iter().flat_map(|(_, run)| run));
        }
        Ok(order)
    }

    /// One round of runs of K images per identity, shuffled (see [`LoaderConfig::identity_order`]).
    fn runs(by_label: &std::collections::BTreeMap<i64, Vec<usize>>, k: usize, rng: &mut ChaCha8Rng) -> Vec<(i64, Vec<usize>)> {
        let mut runs = Vec::new();
        for (&label, images) in by_label {
            let mut images = images.clone();
            images.shuffle(rng);
            let short = (k - images.len() % k) % k;
            for _ in 0..short {
                let again = images[rng.random_range(0..images.len())];
                images.push(again);
            }
            runs.extend(images.chunks_exact(k).map(|run| (label, run.to_vec())));
        }
        runs.shuffle(rng);
        runs
    }

    /// Whether the layout can be loaded: a rank within the world, a batch, and for P x K
    /// batches whole runs of K on every rank.
    pub fn validate(&self) -> Result<()> {
        if self.rank_batch == 0 || self.world == 0 || self.rank >= self.world {
            return Err(DataError::Invalid(format!(
                "loader: rank_batch {} world {} rank {} is not a valid layout",
                self.rank_batch, self.world, self.rank
            )));
        }
        if let Some(k) = self.images_per_identity.filter(|&k| k == 0 || !self.rank_batch.is_multiple_of(k)) {
            return Err(DataError::Invalid(format!(
                "P x K batches: each rank's batch of {} must be a multiple of images_per_identity ({k}), so that every rank holds whole runs of one identity",
                self.rank_batch
            )));
        }
        Ok(())
    }

    /// `(indices, flips)` of this rank's part of every batch of `epoch`, from batch `start`,
    /// for `len` samples; `labels` gives their labels, asked for only by P x K batches.
    pub fn plan(&self, len: usize, labels: impl FnOnce() -> Vec<i64>, epoch: usize, start: usize) -> Result<Vec<(Vec<usize>, Vec<bool>)>> {
        let order = match self.images_per_identity {
            Some(_) => self.identity_order(&labels(), epoch)?,
            None => self.epoch_order(len, epoch),
        };
        let flips = self.epoch_flips(len, epoch);
        let global = self.rank_batch * self.world;
        Ok((start..self.batches_per_epoch(len))
            .map(|b| {
                let lo = b * global + self.rank * self.rank_batch;
                let hi = lo + self.rank_batch;
                (order[lo..hi].to_vec(), flips[lo..hi].to_vec())
            })
            .collect())
    }
}

/// One batch: images `[B, C, H, W]` and labels `[B]`.
#[derive(Debug)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
}

/// Iterates over the batches of one epoch, produced on a background thread.
pub struct Loader {
    rx: Receiver<Result<Batch>>,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts loading batch `start` onwards of `epoch`.
    pub fn new(source: Arc<dyn Source>, config: &LoaderConfig, epoch: usize, start: usize) -> Result<Self> {
        config.validate()?;
        let plan = config.plan(source.len(), || source.labels(), epoch, start)?;
        let (tx, rx) = sync_channel(config.prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name(format!("loader-epoch{epoch}"))
            .spawn(move || {
                for (indices, flips) in plan {
                    let batch = source.load(&indices, &flips).map(|(images, labels)| Batch { images, labels });
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return; // consumer gone, or an error was handed over
                    }
                }
            })
            .map_err(|e| DataError::Invalid(format!("cannot start the loader thread: {e}")))?;
        Ok(Loader { rx, handle: Some(handle) })
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Unblock a producer waiting on a full channel, then wait for it.
        let (_, dummy) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, dummy));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::PixelNorm;
    use crate::pixels::PixelSource;

    #[test]
    fn two_ranks_split_each_global_batch_of_one_rank() {
        let one = LoaderConfig { rank_batch: 8, seed: 5, ..Default::default() };
        let r0 = LoaderConfig { rank_batch: 4, world: 2, rank: 0, ..one.clone() };
        let r1 = LoaderConfig { rank: 1, ..r0.clone() };
        let (a, b, c) = (one.plan(50, Vec::new, 3, 0).unwrap(), r0.plan(50, Vec::new, 3, 0).unwrap(), r1.plan(50, Vec::new, 3, 0).unwrap());
        assert_eq!(a.len(), 6);
        assert_eq!(b.len(), 6);
        for i in 0..6 {
            let joined: Vec<usize> = b[i].0.iter().chain(&c[i].0).copied().collect();
            assert_eq!(a[i].0, joined);
        }
    }

    #[test]
    fn order_depends_on_seed_and_epoch_only_and_resume_skips() {
        let cfg = LoaderConfig { rank_batch: 3, flip: true, ..Default::default() };
        assert_eq!(cfg.plan(20, Vec::new, 1, 0).unwrap(), cfg.plan(20, Vec::new, 1, 0).unwrap());
        assert_ne!(cfg.epoch_order(20, 1), cfg.epoch_order(20, 2));
        assert_eq!(cfg.plan(20, Vec::new, 1, 2).unwrap()[..], cfg.plan(20, Vec::new, 1, 0).unwrap()[2..]);
        let mut perm = cfg.epoch_order(20, 1);
        perm.sort();
        assert_eq!(perm, (0..20).collect::<Vec<_>>());
        let flips = cfg.epoch_flips(1000, 0);
        let n = flips.iter().filter(|&&f| f).count();
        assert!((400..600).contains(&n), "{n} flips of 1000");
    }

    #[test]
    fn identity_batches_hold_p_distinct_identities_of_k_images() {
        // 30 identities with 1 to 9 images each (uneven, as face datasets are).
        let labels: Vec<i64> = (0..30i64).flat_map(|l| std::iter::repeat_n(l, 1 + (l as usize * 7) % 9)).collect();
        let (k, p) = (4usize, 6usize);
        let one = LoaderConfig { rank_batch: p * k, seed: 3, images_per_identity: Some(k), ..Default::default() };
        let plan = one.plan(labels.len(), || labels.clone(), 2, 0).unwrap();
        assert_eq!(plan.len(), labels.len() / (p * k));
        for (batch, _) in &plan {
            let runs: Vec<&[usize]> = batch.chunks(k).collect();
            let ids: Vec<i64> = runs.iter().map(|r| labels[r[0]]).collect();
            assert!(runs.iter().all(|r| r.iter().all(|&i| labels[i] == labels[r[0]])), "a run mixes identities: {batch:?}");
            let mut distinct = ids.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), p, "identities repeat in a batch: {ids:?}");
        }
        // Seeded: the same again, another epoch differs; a resume skips batches.
        assert_eq!(one.plan(labels.len(), || labels.clone(), 2, 0).unwrap(), plan);
        assert_ne!(one.plan(labels.len(), || labels.clone(), 3, 0).unwrap(), plan);
        assert_eq!(one.plan(labels.len(), || labels.clone(), 2, 1).unwrap()[..], plan[1..]);
        // Two ranks take halves of the same global batches (whole runs each).
        let r0 = LoaderConfig { rank_batch: p * k / 2, world: 2, ..one.clone() };
        let r1 = LoaderConfig { rank: 1, ..r0.clone() };
        let (a, b) = (r0.plan(labels.len(), || labels.clone(), 2, 0).unwrap(), r1.plan(labels.len(), || labels.clone(), 2, 0).unwrap());
        for (i, (whole, _)) in plan.iter().enumerate() {
            assert_eq!(a[i].0.iter().chain(&b[i].0).copied().collect::<Vec<_>>(), *whole);
        }
        // Fewer identities than a batch needs.
        let few = vec![0i64, 0, 1, 1, 2, 2, 0, 1];
        let err = LoaderConfig { rank_batch: 8, images_per_identity: Some(2), ..Default::default() }.plan(few.len(), || few.clone(), 0, 0).unwrap_err();
        assert!(err.to_string().contains("at least 4 identities; the data has 3"), "{err}");
    }

    #[test]
    fn loader_refuses_runs_that_straddle_ranks() {
        let pixels: Vec<u8> = (0..20).collect();
        let src: Arc<dyn Source> = Arc::new(PixelSource::new(pixels.into(), (0..10).map(|i| i / 2).collect(), 5, [1, 1, 2]).unwrap());
        let cfg = LoaderConfig { rank_batch: 3, images_per_identity: Some(2), ..Default::default() };
        let err = Loader::new(src.clone(), &cfg, 0, 0).err().unwrap();
        assert!(err.to_string().contains("multiple of images_per_identity (2)"), "{err}");
        let cfg = LoaderConfig { rank_batch: 4, images_per_identity: Some(2), ..Default::default() };
        let batch = Loader::new(src, &cfg, 0, 0).unwrap().next().unwrap().unwrap();
        let labels = Vec::<i64>::try_from(&batch.labels).unwrap();
        assert!(labels[0] == labels[1] && labels[2] == labels[3] && labels[0] != labels[2], "{labels:?}");
    }

    #[test]
    fn loader_yields_planned_batches_and_flips() {
        // 10 one-row images of two pixels: image i is (2i, 2i + 1), label i.
        let pixels: Vec<u8> = (0..20).collect();
        let labels: Vec<i64> = (0..10).collect();
        let src: Arc<dyn Source> = Arc::new(PixelSource::new(pixels.into(), labels, 10, [1, 1, 2]).unwrap());
        let cfg = LoaderConfig { rank_batch: 4, flip: true, seed: 1, ..Default::default() };
        let plan = cfg.plan(10, Vec::new, 0, 0).unwrap();
        let batches: Vec<Batch> = Loader::new(src, &cfg, 0, 0).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 2);
        for (b, (idx, flips)) in batches.iter().zip(&plan) {
            let got = Vec::<i64>::try_from(&b.labels).unwrap();
            assert_eq!(got, idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
            for (k, (&i, &f)) in idx.iter().zip(flips).enumerate() {
                let px = Vec::<f32>::try_from(b.images.get(k as i64).flatten(0, -1)).unwrap();
                let (l, r) = (PixelNorm::CAFFE_FACE.apply(2 * i as u8), PixelNorm::CAFFE_FACE.apply(2 * i as u8 + 1));
                assert_eq!(px, if f { vec![r, l] } else { vec![l, r] });
            }
        }
    }

    #[test]
    fn source_errors_reach_the_consumer() {
        struct Broken;
        impl Source for Broken {
            fn len(&self) -> usize { 8 }
            fn num_classes(&self) -> i64 { 1 }
            fn labels(&self) -> Vec<i64> { vec![0; 8] }
            fn image_shape(&self) -> [i64; 3] { [1, 1, 1] }
            fn load(&self, _: &[usize], _: &[bool]) -> Result<(Tensor, Tensor)> {
                Err(DataError::Invalid("disk on fire".into()))
            }
        }
        let cfg = LoaderConfig { rank_batch: 2, ..Default::default() };
        let mut l = Loader::new(Arc::new(Broken), &cfg, 0, 0).unwrap();
        assert!(l.next().unwrap().unwrap_err().to_string().contains("disk on fire"));
        assert!(l.next().is_none());
    }
}
