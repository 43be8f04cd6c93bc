//! `facerec_ops::prelu` against libtorch's own `prelu` (values and both gradients, fused CPU
//! path and fallback) and a case worked by hand.

use tch::{Device, Kind, Tensor};

/// Output and gradients (input, slopes) of `f` for upstream gradient `g` (of `sum(f * g)`).
fn run(f: impl Fn(&Tensor, &Tensor) -> Tensor, x: &Tensor, w: &Tensor, g: &Tensor) -> (Tensor, Tensor, Tensor) {
    let x = x.detach().set_requires_grad(true);
    let w = w.detach().set_requires_grad(true);
    let y = f(&x, &w);
    (&y * g).sum(Kind::Double).backward();
    (y.detach(), x.grad(), w.grad())
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    assert_eq!(a.kind(), b.kind());
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    (a - b).abs().max().double_value(&[]) / scale
}

fn compare(shape: &[i64], slopes: i64, kind: Kind, tol: f64) {
    tch::manual_seed(shape.iter().product::<i64>() + slopes);
    let opts = (kind, Device::Cpu);
    // Rounded to a grid so that some inputs are exactly zero (the kink, where x > 0 is false).
    let x = (Tensor::randn(shape, opts) * 4.0).round() / 4.0;
    assert!(x.eq(0.0).any().int64_value(&[]) == 1, "the test wants zeros in x");
    let w = (Tensor::rand([slopes], (Kind::Float, Device::Cpu)) - 0.3).to_kind(kind);
    let g = Tensor::randn(shape, (Kind::Float, Device::Cpu)).to_kind(kind);
    let ours = run(|x, w| facerec_ops::prelu(x, w).unwrap(), &x, &w, &g);
    let theirs = run(|x, w| x.prelu(w), &x, &w, &g);
    for (what, a, b) in [("output", &ours.0, &theirs.0), ("input gradient", &ours.1, &theirs.1), ("slope gradient", &ours.2, &theirs.2)] {
        let d = max_rel_diff(a, b);
        assert!(d <= tol, "{what} of shape {shape:?}, {slopes} slope(s), {kind:?}: relative difference {d:e} > {tol:e}");
    }
}

#[test]
fn matches_libtorch_on_the_fused_float32_path() {
    compare(&[3, 5, 7, 6], 5, Kind::Float, 1e-6);
    compare(&[8, 64, 27, 23], 64, Kind::Float, 1e-5); // planes of odd length: the vector tail
    compare(&[4, 5], 5, Kind::Float, 1e-6);
    compare(&[2, 3, 4, 5, 6], 3, Kind::Float, 1e-6);
    compare(&[3, 5, 7, 6], 1, Kind::Float, 1e-6); // one slope shared by all channels
}

#[test]
fn matches_libtorch_on_the_fallback_paths() {
    compare(&[3, 5, 7, 6], 5, Kind::Double, 1e-6);
    compare(&[3, 5, 7, 6], 1, Kind::Double, 1e-6);
    // Non-contiguous input: libtorch's backward.
    tch::manual_seed(1);
    let x = Tensor::randn([3, 6, 5, 5], (Kind::Float, Device::Cpu)).transpose(2, 3);
    let w = Tensor::rand([6], (Kind::Float, Device::Cpu));
    let g = Tensor::randn([3, 6, 5, 5], (Kind::Float, Device::Cpu));
    let ours = run(|x, w| facerec_ops::prelu(x, w).unwrap(), &x, &w, &g);
    let theirs = run(|x, w| x.prelu(w), &x, &w, &g);
    assert!(max_rel_diff(&ours.1, &theirs.1) <= 1e-6 && max_rel_diff(&ours.2, &theirs.2) <= 1e-6);
}

#[test]
fn matches_libtorch_under_bf16_autocast() {
    // The backbone's case with precision = "bf16": a bfloat16 input (a convolution's output)
    // and float32 slopes, which autocast casts for the forward.
    tch::manual_seed(2);
    let x = Tensor::randn([4, 6, 9, 7], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
    let w = Tensor::rand([6], (Kind::Float, Device::Cpu)) - 0.3;
    let g = Tensor::randn([4, 6, 9, 7], (Kind::Float, Device::Cpu));
    let under_autocast = |f: &dyn Fn(&Tensor, &Tensor) -> Tensor| {
        facerec_ops::autocast::bf16(Device::Cpu, || run(|x, w| f(x, w), &x, &w, &g)).unwrap()
    };
    let ours = under_autocast(&|x, w| facerec_ops::prelu(x, w).unwrap());
    let theirs = under_autocast(&|x, w| x.prelu(w));
    assert_eq!((ours.1.kind(), ours.2.kind()), (Kind::BFloat16, Kind::Float), "gradients in their inputs' dtypes");
    for (what, a, b) in [("output", &ours.0, &theirs.0), ("input gradient", &ours.1, &theirs.1), ("slope gradient", &ours.2, &theirs.2)] {
        let d = max_rel_diff(a, b);
        assert!(d <= 1e-2, "{what} under bf16 autocast: relative difference {d:e}");
    }
}

#[test]
fn worked_by_hand() {
    // One channel, slope 0.5, inputs -2, 0, 3, upstream gradient 1, 2, 3:
    // y = (-1, 0, 3); dy/dx = (0.5, 0.5, 1) so dL/dx = (0.5, 1, 3);
    // dL/dslope = sum over x <= 0 of x * g = -2 * 1 + 0 * 2 = -2.
    let x = Tensor::from_slice(&[-2.0f32, 0.0, 3.0]).reshape([1, 1, 3]);
    let w = Tensor::from_slice(&[0.5f32]);
    let g = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).reshape([1, 1, 3]);
    let (y, gx, gw) = run(|x, w| facerec_ops::prelu(x, w).unwrap(), &x, &w, &g);
    assert_eq!(Vec::<f32>::try_from(y.flatten(0, -1)).unwrap(), vec![-1.0, 0.0, 3.0]);
    assert_eq!(Vec::<f32>::try_from(gx.flatten(0, -1)).unwrap(), vec![0.5, 1.0, 3.0]);
    assert_eq!(Vec::<f32>::try_from(gw).unwrap(), vec![-2.0]);
}

#[test]
fn without_gradients_it_is_a_plain_prelu() {
    let x = Tensor::randn([2, 3, 4, 4], (Kind::Float, Device::Cpu));
    let w = Tensor::from_slice(&[0.1f32, 0.2, 0.3]);
    let y = tch::no_grad(|| facerec_ops::prelu(&x.set_requires_grad(true), &w).unwrap());
    assert!(!y.requires_grad());
    assert!(max_rel_diff(&y, &x.prelu(&w).detach()) == 0.0);
}

#[test]
fn wrong_slope_count_is_an_error_that_says_so() {
    let x = Tensor::zeros([2, 5, 3, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let err = facerec_ops::prelu(&x, &Tensor::zeros([4], (Kind::Float, Device::Cpu))).unwrap_err().to_string();
    assert!(err.contains("4 slopes") && err.contains("one per channel"), "{err}");
}
