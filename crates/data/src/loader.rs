//! Seeded, sharded, prefetching batch loading.
//!
//! The order of an epoch is a permutation drawn from `(seed, epoch)` alone, so a run that is
//! stopped and resumed at batch `k` of epoch `e` sees exactly the batches it would have seen.
//! With `world` ranks, each global batch of `world * rank_batch` consecutive samples of that
//! order is cut into `world` slices and rank `r` takes slice `r`: 2 ranks of batch B train on
//! the same samples per step as 1 rank of batch 2B. Flips (when on) are drawn per position
//! from the same seed.
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
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig { rank_batch: 64, shuffle: true, flip: false, seed: 0, rank: 0, world: 1, prefetch: 4 }
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

    /// `(indices, flips)` of this rank's part of every batch of `epoch`, from batch `start`.
    pub fn plan(&self, len: usize, epoch: usize, start: usize) -> Vec<(Vec<usize>, Vec<bool>)> {
        let order = self.epoch_order(len, epoch);
        let flips = self.epoch_flips(len, epoch);
        let global = self.rank_batch * self.world;
        (start..self.batches_per_epoch(len))
            .map(|b| {
                let lo = b * global + self.rank * self.rank_batch;
                let hi = lo + self.rank_batch;
                (order[lo..hi].to_vec(), flips[lo..hi].to_vec())
            })
            .collect()
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
        if config.rank_batch == 0 || config.world == 0 || config.rank >= config.world {
            return Err(DataError::Invalid(format!(
                "loader: rank_batch {} world {} rank {} is not a valid layout",
                config.rank_batch, config.world, config.rank
            )));
        }
        let plan = config.plan(source.len(), epoch, start);
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
    use crate::normalize::normalize_pixel;
    use crate::pixels::PixelSource;

    #[test]
    fn two_ranks_split_each_global_batch_of_one_rank() {
        let one = LoaderConfig { rank_batch: 8, seed: 5, ..Default::default() };
        let r0 = LoaderConfig { rank_batch: 4, world: 2, rank: 0, ..one.clone() };
        let r1 = LoaderConfig { rank: 1, ..r0.clone() };
        let (a, b, c) = (one.plan(50, 3, 0), r0.plan(50, 3, 0), r1.plan(50, 3, 0));
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
        assert_eq!(cfg.plan(20, 1, 0), cfg.plan(20, 1, 0));
        assert_ne!(cfg.epoch_order(20, 1), cfg.epoch_order(20, 2));
        assert_eq!(cfg.plan(20, 1, 2)[..], cfg.plan(20, 1, 0)[2..]);
        let mut perm = cfg.epoch_order(20, 1);
        perm.sort();
        assert_eq!(perm, (0..20).collect::<Vec<_>>());
        let flips = cfg.epoch_flips(1000, 0);
        let n = flips.iter().filter(|&&f| f).count();
        assert!((400..600).contains(&n), "{n} flips of 1000");
    }

    #[test]
    fn loader_yields_planned_batches_and_flips() {
        // 10 one-row images of two pixels: image i is (2i, 2i + 1), label i.
        let pixels: Vec<u8> = (0..20).collect();
        let labels: Vec<i64> = (0..10).collect();
        let src: Arc<dyn Source> = Arc::new(PixelSource::new(pixels.into(), labels, 10, [1, 1, 2]).unwrap());
        let cfg = LoaderConfig { rank_batch: 4, flip: true, seed: 1, ..Default::default() };
        let plan = cfg.plan(10, 0, 0);
        let batches: Vec<Batch> = Loader::new(src, &cfg, 0, 0).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 2);
        for (b, (idx, flips)) in batches.iter().zip(&plan) {
            let got = Vec::<i64>::try_from(&b.labels).unwrap();
            assert_eq!(got, idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
            for (k, (&i, &f)) in idx.iter().zip(flips).enumerate() {
                let px = Vec::<f32>::try_from(b.images.get(k as i64).flatten(0, -1)).unwrap();
                let (l, r) = (normalize_pixel(2 * i as u8), normalize_pixel(2 * i as u8 + 1));
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
