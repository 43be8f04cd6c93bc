//! `facerec launch`: starts N processes of this binary on this machine with torchrun's
//! variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `GROUP_RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`), forwards their output line by line with a `[rank N]` prefix, and fails as
//! soon as one fails, stopping the others (SIGTERM, then SIGKILL after a grace period), as
//! torchrun's agent does. Ctrl-C is passed on to every rank, which checkpoint and stop at the
//! same step; the launch then exits with 130 (a second Ctrl-C makes the ranks exit at once).
//!
//! The ranks run in a process group of their own, so that a terminal's Ctrl-C (which signals
//! the whole foreground group) reaches them once, through the launcher, and not twice (which
//! `facerec train` would take as "abort without a checkpoint"). They also get SIGTERM if the
//! launcher dies, so no rank outlives it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

use crate::outcome::{Interrupted, EXIT_INTERRUPTED};

pub const EXAMPLES: &str = "Examples:
  facerec launch --nproc 2 -- train configs/mnist_lenetpp_center.toml
  facerec launch --nproc 4 -- train configs/lfw_faceresnet_small_center.toml --resume
  facerec launch --nproc 2 --master-port 29600 -- train configs/x.toml   # beside another job
Two machines of 4 GPUs, on each (K = 0 on node0, 1 on the other; the port is the default 29500):
  facerec launch --nnodes 2 --node-rank K --nproc 4 --master-addr node0 -- train configs/x.toml
The same as `facerec launch --nproc 2 -- train configs/x.toml`, with torchrun:
  torchrun --no-python --nproc-per-node 2 target/release/facerec train configs/x.toml";

/// How long the other ranks get to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Processes to start on this machine (one per GPU; on the CPU, a share of the cores each).
    #[arg(long, value_name = "N", visible_alias = "nproc-per-node")]
    pub nproc: usize,
    /// Machines in the job, each running one launch with the same arguments but --node-rank.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub nnodes: usize,
    /// This machine's place among the --nnodes, 0..nnodes; node 0 hosts rank 0's TCPStore.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub node_rank: usize,
    /// Host of rank 0's TCPStore: node 0, as every node reaches it.
    #[arg(long, default_value = "127.0.0.1")]
    pub master_addr: String,
    /// Port of rank 0's TCPStore; 0 picks a free one (one node only).
    #[arg(long, default_value_t = 29500)]
    pub master_port: u16,
    /// Seconds a rank waits for the others (rendezvous and each collective) [default: 600].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// The facerec command each process runs, after `--` (e.g. `-- train configs/x.toml`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl LaunchArgs {
    /// The global rank of this node's process `local`: node K holds ranks K * nproc onwards.
    fn global_rank(&self, local: usize) -> usize {
        self.node_rank * self.nproc + local
    }
}

pub fn run(args: LaunchArgs) -> anyhow::Result<()> {
    if args.nproc == 0 {
        bail!("--nproc must be at least 1");
    }
    if args.nnodes == 0 {
        bail!("--nnodes must be at least 1");
    }
    if args.node_rank >= args.nnodes {
        bail!("--node-rank {} is not a node of --nnodes {} (0..{})", args.node_rank, args.nnodes, args.nnodes);
    }
    if args.nnodes > 1 && args.master_port == 0 {
        bail!("--master-port 0 (a free port) works on one node only: with --nnodes {} every node must be given rank 0's port", args.nnodes);
    }
    if args.command.first().map(String::as_str) == Some("launch") {
        bail!("facerec launch cannot launch itself");
    }
    let port = master_port(&args)?;
    let exe = std::env::current_exe().context("finding the facerec binary")?;
    // Like torchrun: without OMP_NUM_THREADS, share the cores instead of giving each process
    // all of them (a config's `threads` still overrides this).
    let threads = std::env::var_os("OMP_NUM_THREADS").is_none().then(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / args.nproc).max(1)
    });

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
    }

    let (children, forwarders) = start_ranks(&args, &exe, port, threads)?;
    let first = args.global_rank(0);
    let mut ranks = Ranks { statuses: vec![None; children.len()], children, first, failure: None, interrupted: false };
    ranks.supervise(&stop)?;
    for f in forwarders {
        let _ = f.join();
    }
    let any_interrupted = ranks.statuses.iter().flatten().any(|&s| stopped_by_interrupt(s, ranks.interrupted));
    match ranks.failure {
        Some((local, status)) => bail!(
            "rank {} of {} {}; the other ranks{} were stopped",
            first + local,
            args.nproc * args.nnodes,
            describe(status),
            if args.nnodes > 1 { " of this node" } else { "" }
        ),
        None if any_interrupted => {
            eprintln!("[launch] all {} ranks of this node stopped after the interrupt", args.nproc);
            Err(Interrupted.into())
        }
        None => Ok(()),
    }
}

/// `--master-port`, or with 0 a port that is free now.
fn master_port(args: &LaunchArgs) -> anyhow::Result<u16> {
    Ok(match args.master_port {
        0 => TcpListener::bind((args.master_addr.as_str(), 0))
            .and_then(|l| l.local_addr())
            .with_context(|| format!("finding a free port on {}", args.master_addr))?
            .port(),
        p => p,
    })
}

/// Starts every rank, with its output forwarded (the threads that do it returned with the
/// children); if one fails to start, stops those already started.
fn start_ranks(
    args: &LaunchArgs,
    exe: &Path,
    port: u16,
    threads: Option<usize>,
) -> anyhow::Result<(Vec<Child>, Vec<std::thread::JoinHandle<()>>)> {
    let mut children: Vec<Child> = Vec::with_capacity(args.nproc);
    let mut forwarders = Vec::new();
    for local in 0..args.nproc {
        let rank = args.global_rank(local);
        let mut child = match rank_command(args, exe, local, port, threads).spawn() {
            Ok(c) => c,
            Err(e) => {
                stop_all(&mut children);
                return Err(e).with_context(|| format!("starting rank {rank} ({})", exe.display()));
            }
        };
        eprintln!("[launch] rank {rank}: pid {} (MASTER_ADDR={} MASTER_PORT={port})", child.id(), args.master_addr);
        let prefix = format!("[rank {rank}] ");
        if let Some(out) = child.stdout.take() {
            forwarders.push(forward(out, prefix.clone(), false));
        }
        if let Some(err) = child.stderr.take() {
            forwarders.push(forward(err, prefix, true));
        }
        children.push(child);
    }
    Ok((children, forwarders))
}

/// The command of this node's rank `local`: torchrun's variables, piped output, a process group
/// of its own, and SIGTERM when the launcher dies.
fn rank_command(args: &LaunchArgs, exe: &Path, local: usize, port: u16, threads: Option<usize>) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(&args.command)
        .env("RANK", args.global_rank(local).to_string())
        .env("WORLD_SIZE", (args.nnodes * args.nproc).to_string())
        .env("LOCAL_RANK", local.to_string())
        .env("LOCAL_WORLD_SIZE", args.nproc.to_string())
        .env("GROUP_RANK", args.node_rank.to_string())
        .env("MASTER_ADDR", &args.master_addr)
        .env("MASTER_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = args.timeout {
        cmd.env("FACEREC_DIST_TIMEOUT", t.to_string());
    }
    if let Some(n) = threads {
        cmd.env("OMP_NUM_THREADS", n.to_string());
    }
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the child between fork and exec and only calls `prctl`,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The running ranks and how they ended.
struct Ranks {
    /// This node's ranks, in order from global rank `first`.
    children: Vec<Child>,
    first: usize,
    /// Each rank's exit status, once it has one.
    statuses: Vec<Option<ExitStatus>>,
    /// The first rank that failed (its index on this node).
    failure: Option<(usize, ExitStatus)>,
    /// Whether Ctrl-C was passed on.
    interrupted: bool,
}

impl Ranks {
    /// Waits for every rank, passing Ctrl-C (`stop`) on to all of them, and stopping the others
    /// when one fails.
    fn supervise(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        while self.statuses.iter().any(Option::is_none) {
            if stop.swap(false, Ordering::SeqCst) {
                self.interrupted = true;
                eprintln!("[launch] interrupted: asking every rank to checkpoint and stop");
                signal_all(&self.children, &self.statuses, libc::SIGINT);
            }
            for rank in 0..self.children.len() {
                if self.statuses[rank].is_some() {
                    continue;
                }
                if let Some(status) = self.children[rank].try_wait().with_context(|| format!("waiting for rank {}", self.first + rank))? {
                    self.ended(rank, status);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Records that `rank` ended; the first to fail stops the others (SIGTERM, then SIGKILL
    /// after [`GRACE`]).
    fn ended(&mut self, rank: usize, status: ExitStatus) {
        self.statuses[rank] = Some(status);
        if !status.success() && !stopped_by_interrupt(status, self.interrupted) && self.failure.is_none() {
            self.failure = Some((rank, status));
            eprintln!("[launch] rank {} {}; stopping the other ranks", self.first + rank, describe(status));
            signal_all(&self.children, &self.statuses, libc::SIGTERM);
            let deadline = Instant::now() + GRACE;
            wait_until(&mut self.children, &mut self.statuses, deadline);
            signal_all(&self.children, &self.statuses, libc::SIGKILL);
        }
    }
}

/// Whether a rank ended because of an interrupt rather than a failure: `facerec train` exits
/// with 130 after its checkpoint (whether this launcher or someone else signalled it), and a
/// rank that had not yet installed its handler when this launcher passed Ctrl-C on dies of SIGINT.
fn stopped_by_interrupt(status: ExitStatus, interrupted: bool) -> bool {
    status.code() == Some(i32::from(EXIT_INTERRUPTED)) || (interrupted && status.signal() == Some(libc::SIGINT))
}

/// Copies `from` to this process's stdout or stderr, a line at a time, behind `prefix`.
fn forward(from: impl Read + Send + 'static, prefix: String, to_stderr: bool) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']);
                    // One write per line, so that lines of two ranks never interleave.
                    let out = format!("{prefix}{text}\n");
                    let _ = if to_stderr {
                        std::io::stderr().lock().write_all(out.as_bytes())
                    } else {
                        std::io::stdout().lock().write_all(out.as_bytes())
                    };
                }
            }
        }
    })
}

fn signal_all(children: &[Child], statuses: &[Option<ExitStatus>], signal: libc::c_int) {
    for (child, status) in children.iter().zip(statuses) {
        if status.is_none() {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: signals a child of this process that has not been reaped yet, so the pid
                // cannot have been reused.
                unsafe { libc::kill(pid, signal) };
            }
        }
    }
}

fn wait_until(children: &mut [Child], statuses: &mut [Option<ExitStatus>], deadline: Instant) {
    while Instant::now() < deadline && statuses.iter().any(Option::is_none) {
        for (child, status) in children.iter_mut().zip(statuses.iter_mut()) {
            if status.is_none() {
                if let Ok(Some(s)) = child.try_wait() {
                    *status = Some(s);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills and reaps what was started (a spawn failed half way).
fn stop_all(children: &mut [Child]) {
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}{}", match sig {
            libc::SIGKILL => " (SIGKILL: out of memory, or killed)",
            libc::SIGSEGV => " (SIGSEGV: a crash)",
            libc::SIGTERM => " (SIGTERM)",
            libc::SIGINT => " (SIGINT)",
            _ => "",
        }),
        _ => "ended".to_owned(),
    }
}
