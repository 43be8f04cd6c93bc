//! All-reduce time and bandwidth of a Gloo process group on this machine, for buffer sizes from
//! 4 KB to the gradients of the full Face-ResNet with a CASIA-WebFace head (132 MB):
//!
//!     cargo run --release -p facerec-dist --example allreduce -- [processes, default 2]
//!
//! It starts the processes itself (itself again, with torchrun's variables on 127.0.0.1);
//! rank 0 prints one line per size. "bus bandwidth" is NCCL's convention: the algorithm
//! bandwidth (bytes / time) times 2(n-1)/n, the share of the buffer a ring all-reduce moves
//! through each process, so that it compares with a link's speed.

#![allow(clippy::print_stdout)]

use std::net::TcpListener;
use std::process::Command;
use std::time::Instant;

use facerec_dist::{Backend, DistConfig, ProcessGroup};
use tch::{Device, Kind, Tensor};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result {
    match DistConfig::from_env()? {
        Some(config) => rank(&config),
        None => launch(std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(2)),
    }
}

fn launch(n: usize) -> Result {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let children = (0..n)
        .map(|r| {
            Command::new(std::env::current_exe()?)
                .envs([("RANK", r.to_string()), ("WORLD_SIZE", n.to_string()), ("LOCAL_RANK", r.to_string())])
                .envs([("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", port.as_str()), ("OMP_NUM_THREADS", "1")])
                .spawn()
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    for mut c in children {
        if !c.wait()?.success() {
            return Err("a rank failed".into());
        }
    }
    Ok(())
}

fn rank(config: &DistConfig) -> Result {
    let group = ProcessGroup::new(config, Backend::Gloo)?;
    let n = group.world_size() as f64;
    if group.is_main() {
        println!("{} processes, Gloo over 127.0.0.1, float32 sums", group.world_size());
        println!("{:>10}  {:>10}  {:>14}  {:>13}", "bytes", "time", "algorithm GB/s", "bus GB/s");
    }
    let sizes: [(i64, &str); 6] = [
        (1 << 10, ""),
        (1 << 14, ""),
        (1 << 18, ""),
        (799_396, " (LeNets++ gradients)"),
        (1 << 22, ""),
        (27_536_800 + 512 * 10_575 + 10_575, " (Face-ResNet + 10,575-way softmax)"),
    ];
    for (numel, note) in sizes {
        let mut t = Tensor::ones([numel], (Kind::Float, Device::Cpu));
        let bytes = numel as f64 * 4.0;
        let reps = ((256e6 / bytes) as usize).clamp(3, 200);
        group.all_reduce(&mut t)?; // warm-up (connections, buffers)
        group.barrier()?;
        let t0 = Instant::now();
        for _ in 0..reps {
            group.all_reduce(&mut t)?;
        }
        group.barrier()?;
        let dt = t0.elapsed().as_secs_f64() / reps as f64;
        if group.is_main() {
            let alg = bytes / dt / 1e9;
            println!("{:>10}  {:>8.3} ms  {:>14.2}  {:>13.2}{note}", bytes as u64, dt * 1e3, alg, alg * 2.0 * (n - 1.0) / n);
        }
    }
    Ok(())
}
