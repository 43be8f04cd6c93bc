//! The Rust API on two real processes: each test re-executes this test binary twice (filtered
//! to itself) with torchrun's variables set, and checks what the two ranks report.

// The measured numbers are printed for `--nocapture`.
#![allow(clippy::print_stdout)]

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use facerec_dist::{Backend, DistConfig, DistError, GradReducer, ProcessGroup, ReduceOp};
use tch::{Kind, Tensor};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const ROLE: &str = "FACEREC_DIST_TEST_ROLE";

/// A TCP port that was free a moment ago.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `test` of this binary as ranks 0 and 1; kills both after `limit`.
fn two_ranks(test: &str, timeout_s: f64, limit: Duration) -> Result<[(Output, Duration); 2]> {
    let port = free_port()?.to_string();
    let start = Instant::now();
    let mut children = Vec::new();
    for rank in 0..2 {
        let child = Command::new(std::env::current_exe()?)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, test)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", "2")
            .env("LOCAL_RANK", rank.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", &port)
            .env("FACEREC_DIST_TIMEOUT", timeout_s.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        children.push(child);
    }
    let mut done: Vec<Option<(Output, Duration)>> = vec![None, None];
    while done.iter().any(Option::is_none) {
        for (i, child) in children.iter_mut().enumerate() {
            if done[i].is_none() && child.try_wait()?.is_some() {
                done[i] = Some((Output { status: child.wait()?, stdout: Vec::new(), stderr: Vec::new() }, start.elapsed()));
            }
        }
        if start.elapsed() > limit {
            for c in &mut children {
                let _ = c.kill();
            }
            return Err(format!("{test}: the two ranks did not finish within {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = Vec::new();
    for (child, d) in children.into_iter().zip(done) {
        let (_, elapsed) = d.ok_or("unreachable")?;
        out.push((child.wait_with_output()?, elapsed));
    }
    let [a, b]: [(Output, Duration); 2] = out.try_into().map_err(|_| "two outputs")?;
    Ok([a, b])
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs `test` as ranks 0 and 1 (a 60 s collective timeout, killed after 90 s) and checks that
/// both succeeded and said `rank N done`.
fn both_ranks_succeed(test: &str) -> Result {
    let [(r0, _), (r1, _)] = two_ranks(test, 60.0, Duration::from_secs(90))?;
    assert!(r0.status.success(), "rank 0:\n{}", text(&r0));
    assert!(r1.status.success(), "rank 1:\n{}", text(&r1));
    assert!(text(&r0).contains("rank 0 done") && text(&r1).contains("rank 1 done"));
    Ok(())
}

/// This process's rank config when it is a child running `test`.
fn child(test: &str) -> Option<DistConfig> {
    (std::env::var(ROLE).ok()? == test).then(|| DistConfig::from_env().expect("env").expect("distributed"))
}

/// The overlapped reducer: gradients hooked during backward passes, bucketed (a 64-byte cap
/// makes one bucket per parameter here, a large one puts them all in one), all-reduced and
/// scaled: each rank ends with the average of the two ranks' autograd gradients, a parameter
/// one rank never used included (it counts as zeros there), over several passes.
#[test]
fn the_overlapped_reducer_averages_gradients_during_backward() -> Result {
    const TEST: &str = "the_overlapped_reducer_averages_gradients_during_backward";
    if let Some(cfg) = child(TEST) {
        let g = ProcessGroup::new(&cfg, Backend::Gloo)?;
        let r = g.rank() as f64;
        for cap in [64usize, 1 << 20] {
            let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).set_requires_grad(true);
            let b = Tensor::from_slice(&[0.5f32; 40]).set_requires_grad(true);
            let unused_on_1 = Tensor::from_slice(&[4.0f32, 5.0]).set_requires_grad(true);
            let mut reducer = GradReducer::new(&g, &[a.shallow_clone(), b.shallow_clone(), unused_on_1.shallow_clone()], cap, cap)?;
            assert_eq!(reducer.buckets(), if cap == 64 { 3 } else { 1 }, "cap {cap}");
            for pass in 0..3 {
                let k = r + 1.0 + pass as f64; // rank 0: 1, 2, 3; rank 1: 2, 3, 4
                for t in [&a, &b, &unused_on_1] {
                    let mut grad = t.grad();
                    if grad.defined() {
                        let _ = grad.zero_();
                    }
                }
                reducer.prepare()?;
                // d/da = 2k a, d/db = k, d/du = 3 (rank 0 only).
                let mut loss = (&a * &a).sum(Kind::Float) * k + b.sum(Kind::Float) * k;
                if g.rank() == 0 {
                    loss += unused_on_1.sum(Kind::Float) * 3.0;
                }
                loss.backward();
                reducer.finish(0.5)?;
                let mean_k = (1.0 + 2.0) / 2.0 + pass as f64;
                let expect = |v: Vec<f32>| Tensor::from_slice(&v);
                assert!(a.grad().allclose(&expect(vec![2.0 * mean_k as f32, 4.0 * mean_k as f32, 6.0 * mean_k as f32]), 1e-6, 1e-6, false), "a, pass {pass}: {:?}", a.grad());
                assert!(b.grad().allclose(&expect(vec![mean_k as f32; 40]), 1e-6, 1e-6, false), "b, pass {pass}");
                assert!(unused_on_1.grad().allclose(&expect(vec![1.5, 1.5]), 1e-6, 1e-6, false), "unused, pass {pass}: {:?}", unused_on_1.grad());
            }
        }
        println!("rank {} done", g.rank());
        return Ok(());
    }
    both_ranks_succeed(TEST)
}

#[test]
fn all_reduce_broadcast_all_gather_and_barrier() -> Result {
    const TEST: &str = "all_reduce_broadcast_all_gather_and_barrier";
    if let Some(cfg) = child(TEST) {
        let g = ProcessGroup::new(&cfg, Backend::Gloo)?;
        let r = g.rank() as f64;
        assert_eq!((g.world_size(), g.backend()), (2, Backend::Gloo));

        // all_reduce sums: float, double and int64; and a 1M-element buffer (many Gloo chunks).
        let mut t = Tensor::from_slice(&[r as f32 + 1.0, 10.0 * (r as f32 + 1.0)]);
        g.all_reduce(&mut t)?;
        assert_eq!(Vec::<f32>::try_from(&t)?, [3.0, 30.0]);
        let mut t = Tensor::from_slice(&[0.1f64 * (r + 1.0)]);
        g.all_reduce(&mut t)?;
        assert_eq!(f64::try_from(&t)?, 0.1 + 0.2);
        let mut t = Tensor::from_slice(&[1i64 << (40 + g.rank())]);
        g.all_reduce(&mut t)?;
        assert_eq!(i64::try_from(&t)?, (1 << 40) + (1 << 41));
        let mut big = Tensor::arange(1_000_000, (Kind::Float, tch::Device::Cpu)) * (r + 1.0);
        g.all_reduce(&mut big)?;
        let expected = Tensor::arange(1_000_000, (Kind::Float, tch::Device::Cpu)) * 3.0;
        assert!(big.equal(&expected));
        // ... and the maximum: rank 1's value in one place, rank 0's in the other, -inf kept.
        let mut t = Tensor::from_slice(&[r as f32, 1.0 - r as f32, f32::NEG_INFINITY]);
        g.all_reduce_op(&mut t, ReduceOp::Max)?;
        assert_eq!(Vec::<f32>::try_from(&t)?, [1.0, 1.0, f32::NEG_INFINITY]);

        // broadcast from rank 1 replaces rank 0's values, in place.
        let mut t = Tensor::full([2, 3], 7.0 * (r + 1.0), (Kind::Float, tch::Device::Cpu));
        g.broadcast(&mut t, 1)?;
        assert!(t.equal(&Tensor::full([2, 3], 14.0, (Kind::Float, tch::Device::Cpu))));

        // all_gather returns every rank's tensor in rank order.
        let mine = Tensor::full([3, 2], r, (Kind::Float, tch::Device::Cpu));
        let all = g.all_gather(&mine)?;
        assert_eq!(all.len(), 2);
        for (k, t) in all.iter().enumerate() {
            assert!(t.equal(&Tensor::full([3, 2], k as f64, (Kind::Float, tch::Device::Cpu))), "slot {k}");
        }
        let labels = g.all_gather(&Tensor::from_slice(&[g.rank() as i64, 5]))?;
        assert_eq!(Vec::<i64>::try_from(&Tensor::cat(&labels, 0))?, [0, 5, 1, 5]);

        // Tensors a backend cannot take fail on this rank before any collective is issued.
        let mut strided = Tensor::zeros([4, 4], (Kind::Float, tch::Device::Cpu)).tr();
        let err = g.all_reduce(&mut strided);
        assert!(matches!(err, Err(DistError::Tensor { .. })), "{err:?}");
        assert!(g.broadcast(&mut Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)), 2).is_err());

        g.barrier()?;
        println!("rank {} done", g.rank());
        return Ok(());
    }
    both_ranks_succeed(TEST)
}

#[test]
fn a_dead_peer_is_an_error_not_a_hang() -> Result {
    // Rank 1 leaves right after a barrier; rank 0's next all_reduce must fail at once (the
    // timeout is 30 s; Gloo sees the closed connection), naming the rank and the cause.
    const TEST: &str = "a_dead_peer_is_an_error_not_a_hang";
    if let Some(cfg) = child(TEST) {
        let g = ProcessGroup::new(&cfg, Backend::Gloo)?;
        g.barrier()?;
        if g.rank() == 1 {
            std::process::exit(0);
        }
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let err = g.all_reduce(&mut Tensor::ones([1000], (Kind::Float, tch::Device::Cpu))).unwrap_err();
        println!("rank 0 error after {:.2} s: {err}", t0.elapsed().as_secs_f64());
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert!(matches!(err, DistError::Collective { rank: 0, op: "all_reduce", .. }), "{err:?}");
        drop(g);
        return Ok(());
    }
    let [(r0, t0), (r1, _)] = two_ranks(TEST, 30.0, Duration::from_secs(60))?;
    let msg = text(&r0);
    println!("{msg}");
    assert!(r0.status.success(), "rank 0:\n{msg}");
    assert!(r1.status.success(), "rank 1:\n{}", text(&r1));
    assert!(msg.contains("rank 0 of 2: all_reduce failed:") && msg.contains("another rank"), "{msg}");
    assert!(t0 < Duration::from_secs(20), "rank 0 took {t0:?}");
    Ok(())
}

#[test]
fn a_hung_peer_times_out() -> Result {
    // Rank 1 never joins the all_reduce; rank 0 gives up after the 2 s timeout and leaves.
    const TEST: &str = "a_hung_peer_times_out";
    if let Some(cfg) = child(TEST) {
        let g = ProcessGroup::new(&cfg, Backend::Gloo)?;
        g.barrier()?;
        if g.rank() == 1 {
            std::thread::sleep(Duration::from_secs(3));
            std::process::exit(0);
        }
        let t0 = Instant::now();
        let err = g.all_reduce(&mut Tensor::ones([10], (Kind::Float, tch::Device::Cpu))).unwrap_err();
        let waited = t0.elapsed();
        println!("rank 0 error after {:.2} s: {err}", waited.as_secs_f64());
        assert!(waited >= Duration::from_millis(1900) && waited < Duration::from_secs(5), "{waited:?}");
        assert!(err.to_string().contains("did not take part in time"), "{err}");
        // Leaving the group does not wait for the stuck peer either.
        let t1 = Instant::now();
        drop(g);
        assert!(t1.elapsed() < Duration::from_secs(2), "dropping the group took {:?}", t1.elapsed());
        return Ok(());
    }
    let [(r0, _), _] = two_ranks(TEST, 2.0, Duration::from_secs(60))?;
    println!("{}", text(&r0));
    assert!(r0.status.success(), "rank 0:\n{}", text(&r0));
    assert!(text(&r0).contains("rank 0 error after"), "{}", text(&r0));
    Ok(())
}

#[test]
fn nccl_runs_on_a_gpu_and_fails_cleanly_without_one() -> Result {
    // A world of one process: on a machine with a GPU this runs NCCL for real; without one,
    // joining must fail with an error, not abort the process.
    let cfg = DistConfig {
        rank: 0,
        world_size: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: free_port()?,
        timeout: Duration::from_secs(30),
        launcher: facerec_dist::Launcher::Torchrun,
    };
    let group = ProcessGroup::new(&cfg, Backend::Nccl);
    if !facerec_dist::nccl_compiled() {
        assert!(matches!(group, Err(DistError::NcclUnavailable)), "{group:?}");
        return Ok(());
    }
    if tch::Cuda::device_count() == 0 {
        let err = group.unwrap_err();
        println!("without a GPU: {err}");
        assert!(matches!(err, DistError::Rendezvous { backend: "nccl", .. }), "{err:?}");
        return Ok(());
    }
    let g = group?;
    let cuda = tch::Device::Cuda(0);
    let mut t = Tensor::ones([1000], (Kind::Float, cuda));
    g.all_reduce(&mut t)?;
    assert_eq!(f64::try_from(t.sum(Kind::Double))?, 1000.0);
    let mut b = Tensor::arange(6, (Kind::Float, cuda));
    g.broadcast(&mut b, 0)?;
    let all = g.all_gather(&b)?;
    assert_eq!(all.len(), 1);
    assert!(all[0].equal(&Tensor::arange(6, (Kind::Float, cuda))));
    g.barrier()?;
    // A CPU tensor is refused before it reaches NCCL.
    let mut cpu = Tensor::ones([3], (Kind::Float, tch::Device::Cpu));
    assert!(matches!(g.all_reduce(&mut cpu), Err(DistError::Tensor { .. })));
    Ok(())
}
