//! `keep_freed_memory`: after it, a large tensor allocated again reuses mapped pages instead
//! of faulting every page in afresh. One test, since the setting is process-wide and the
//! control measurement has to come first; without libtest's harness (Cargo.toml), because the
//! setting is about the main thread's heap, where facerec's steps allocate, and libtest runs
//! each test on a thread of its own (whose arena would mmap blocks above 64 MiB regardless).

use tch::{Device, Kind, Tensor};

fn minor_faults() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    usage.ru_minflt
}

/// Minor page faults while allocating and filling a 96 MiB tensor, after one like it was
/// allocated and freed.
fn faults_of_a_second_allocation() -> i64 {
    let n = 24 << 20; // floats
    drop(Tensor::ones([n], (Kind::Float, Device::Cpu)));
    let before = minor_faults();
    let t = Tensor::ones([n], (Kind::Float, Device::Cpu));
    let after = minor_faults();
    assert_eq!(t.sum(Kind::Double).double_value(&[]), n as f64);
    after - before
}

fn main() {
    let pages = (96 << 20) / 4096;
    let default = faults_of_a_second_allocation();
    assert!(
        default > pages / 2,
        "with glibc's defaults a 96 MiB block is mmap'ed afresh, expected about {pages} faults, saw {default} \
         (is MALLOC_MMAP_MAX_ or GLIBC_TUNABLES set?)"
    );
    assert!(facerec_ops::memory::keep_freed_memory(), "mallopt was refused");
    drop(Tensor::ones([24 << 20], (Kind::Float, Device::Cpu))); // grows the heap once
    let kept = faults_of_a_second_allocation();
    assert!(kept < pages / 20, "after keep_freed_memory a reallocation faulted {kept} pages of {pages}");
    eprintln!("memory: freed tensor memory is reused: {default} page faults with glibc's defaults, {kept} after keep_freed_memory");
}
