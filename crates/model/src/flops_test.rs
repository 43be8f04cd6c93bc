//! The FLOP counts of the backbone configs, checked by hand.

use crate::backbone::BackboneSpec;
use crate::face_resnet::FaceResnetConfig;
use crate::lenet_pp::LenetPpConfig;

#[test]
fn hand_counted() {
    // LeNets++ on 28x28: 2*25*(1*32 + 32*32)*784 + 2*25*(32*64 + 64*64)*196
    //   + 2*25*(64*128 + 128*128)*49 + 2*2048*2
    let expected = 2.0 * 25.0 * ((32.0 + 1024.0) * 784.0 + (2048.0 + 4096.0) * 196.0 + (8192.0 + 16384.0) * 49.0) + 8192.0;
    assert_eq!(LenetPpConfig::default().forward_flops().unwrap(), expected);
    // Face-ResNet: about 4.2 GFLOP per 112x96 image (hand count in docs/benchmarks.md).
    let f = FaceResnetConfig::default().forward_flops().unwrap();
    assert!((f / 1e9 - 4.2).abs() < 0.1, "{f}");
}

#[test]
fn mobilefacenet_matches_its_paper() {
    use crate::mobilefacenet::MobileFaceNetConfig;
    // The paper's Table 1: 221 million multiply-adds at 112x112 (2 FLOPs each). Its count
    // leaves out BatchNorm and PReLU, as forward_flops does.
    let square = MobileFaceNetConfig { input_size: [112, 112], feature_dim: 128 }.forward_flops().unwrap();
    assert!((square / 2e6 - 221.0).abs() < 3.0, "{}", square / 2e6);
    // 112x96 is 6/7 of the pixels.
    let f = MobileFaceNetConfig::default().forward_flops().unwrap();
    assert!((f / square - 96.0 / 112.0).abs() < 0.01, "{f} vs {square}");
}
