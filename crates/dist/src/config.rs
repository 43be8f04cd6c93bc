//! Where a process stands in a job, read from the launcher's environment.
//!
//! - **torchrun** (and `facerec launch`, which sets the same variables): `RANK`, `WORLD_SIZE`,
//!   `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`.
//! - **SLURM** (`srun`): `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, plus `MASTER_ADDR`
//!   (and optionally `MASTER_PORT`), which the job script exports: SLURM does not choose the
//!   rendezvous host. Without `MASTER_ADDR` a SLURM task trains alone (with a warning when the
//!   job has several tasks), so that a plain `facerec train` inside `sbatch` still works.
//!
//! torchrun's variables win when both are present. `FACEREC_DIST_TIMEOUT` (seconds, default
//! 600, like NCCL's default in PyTorch) bounds the rendezvous and every collective.

use std::time::Duration;

use crate::error::{DistError, Result};

/// `MASTER_PORT` when SLURM's job script gives none (c10d's default port).
pub const DEFAULT_PORT: u16 = 29500;
/// The wait limit when `FACEREC_DIST_TIMEOUT` is unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Which launcher's variables were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    Torchrun,
    Slurm,
}

/// This process's place in a distributed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistConfig {
    /// Global rank, `0..world_size`; rank 0 hosts the TCPStore.
    pub rank: usize,
    pub world_size: usize,
    /// Rank on this machine: the CUDA device this process uses.
    pub local_rank: usize,
    /// Host and port of rank 0's TCPStore.
    pub master_addr: String,
    pub master_port: u16,
    /// Limit on the rendezvous and on each collective.
    pub timeout: Duration,
    pub launcher: Launcher,
}

impl DistConfig {
    /// Reads the process environment; `None` when the process was not launched distributed.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`DistConfig::from_env`] over any variable lookup (for tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let num = |var: &'static str| -> Result<Option<usize>> {
            match get(var) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| DistError::Env {
                    var,
                    value: v.clone(),
                    msg: "expected a non-negative integer".into(),
                }),
            }
        };
        let (launcher, rank, world, local, (rank_var, world_var)) = if get("RANK").is_some() || get("WORLD_SIZE").is_some() {
            let missing = |var: &'static str, other: &str| DistError::Env {
                var,
                value: String::new(),
                msg: format!("{other} is set but {var} is not (torchrun and facerec launch set both)"),
            };
            let rank = num("RANK")?.ok_or_else(|| missing("RANK", "WORLD_SIZE"))?;
            let world = num("WORLD_SIZE")?.ok_or_else(|| missing("WORLD_SIZE", "RANK"))?;
            let local = num("LOCAL_RANK")?.unwrap_or(rank);
            (Launcher::Torchrun, rank, world, local, ("RANK", "WORLD_SIZE"))
        } else if let (Some(rank), Some(world)) = (num("SLURM_PROCID")?, num("SLURM_NTASKS")?) {
            if get("MASTER_ADDR").is_none() {
                if world > 1 {
                    tracing::warn!(
                        "SLURM_NTASKS={world} but MASTER_ADDR is not set: training as a single process \
                         (export MASTER_ADDR, e.g. the first host of $SLURM_JOB_NODELIST, for data parallelism)"
                    );
                }
                return Ok(None);
            }
            let local = num("SLURM_LOCALID")?.unwrap_or(0);
            (Launcher::Slurm, rank, world, local, ("SLURM_PROCID", "SLURM_NTASKS"))
        } else {
            return Ok(None);
        };
        if world == 0 {
            return Err(DistError::Env { var: world_var, value: "0".into(), msg: "the world needs at least one process".into() });
        }
        if rank >= world {
            return Err(DistError::Env { var: rank_var, value: rank.to_string(), msg: format!("not below the world size {world}") });
        }
        let master_addr = get("MASTER_ADDR").filter(|a| !a.trim().is_empty()).ok_or_else(|| DistError::Env {
            var: "MASTER_ADDR",
            value: String::new(),
            msg: "not set: the host of rank 0 (127.0.0.1 on one machine)".into(),
        })?;
        let master_port = match get("MASTER_PORT") {
            None if launcher == Launcher::Slurm => DEFAULT_PORT,
            None => {
                return Err(DistError::Env {
                    var: "MASTER_PORT",
                    value: String::new(),
                    msg: "not set: a free TCP port on rank 0's host".into(),
                })
            }
            Some(p) => match p.trim().parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(DistError::Env { var: "MASTER_PORT", value: p, msg: "expected a port in 1..=65535".into() }),
            },
        };
        let timeout = match get("FACEREC_DIST_TIMEOUT") {
            None => DEFAULT_TIMEOUT,
            Some(t) => match t.trim().parse::<f64>() {
                Ok(s) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
                _ => return Err(DistError::Env { var: "FACEREC_DIST_TIMEOUT", value: t, msg: "expected seconds > 0".into() }),
            },
        };
        Ok(Some(DistConfig { rank, world_size: world, local_rank: local, master_addr: master_addr.trim().to_owned(), master_port, timeout, launcher }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Option<DistConfig>> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        DistConfig::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn torchrun_variables() {
        let c = read(&[("RANK", "3"), ("WORLD_SIZE", "8"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "node0"), ("MASTER_PORT", "29400")])
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            DistConfig {
                rank: 3,
                world_size: 8,
                local_rank: 1,
                master_addr: "node0".into(),
                master_port: 29400,
                timeout: DEFAULT_TIMEOUT,
                launcher: Launcher::Torchrun
            }
        );
    }

    #[test]
    fn slurm_variables_need_master_addr_and_default_the_port() {
        let slurm = [("SLURM_PROCID", "5"), ("SLURM_NTASKS", "8"), ("SLURM_LOCALID", "1")];
        assert_eq!(read(&slurm).unwrap(), None);
        let mut with_addr = slurm.to_vec();
        with_addr.extend([("MASTER_ADDR", "gpu17"), ("FACEREC_DIST_TIMEOUT", "2.5")]);
        let c = read(&with_addr).unwrap().unwrap();
        assert_eq!((c.rank, c.world_size, c.local_rank, c.master_port), (5, 8, 1, DEFAULT_PORT));
        assert_eq!((c.launcher, c.timeout), (Launcher::Slurm, Duration::from_millis(2500)));
        // torchrun's variables win over SLURM's.
        with_addr.extend([("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1234")]);
        let c = read(&with_addr).unwrap().unwrap();
        assert_eq!((c.rank, c.world_size, c.local_rank, c.launcher), (0, 2, 0, Launcher::Torchrun));
    }

    #[test]
    fn nothing_set_is_not_distributed_and_bad_values_say_which_variable() {
        assert_eq!(read(&[]).unwrap(), None);
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[("RANK", "0")], "WORLD_SIZE"),
            (&[("RANK", "x"), ("WORLD_SIZE", "2")], "RANK=\"x\""),
            (&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")], "not below the world size 2"),
            (&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")], "MASTER_ADDR"),
            (&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")], "MASTER_PORT=\"70000\""),
        ];
        for (vars, expected) in cases {
            let err = read(vars).unwrap_err().to_string();
            assert!(err.contains(expected), "{vars:?}: {err}");
        }
    }
}
