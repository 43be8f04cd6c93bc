//! Shapes, parameter names and parameter counts of the backbones.

use facerec_model::face_resnet::FaceResnetConfig;
use facerec_model::iresnet::IresnetConfig;
use facerec_model::lenet_pp::LenetPpConfig;
use facerec_model::{BackboneConfig, ModelError};
use tch::{nn, Device, Kind, Tensor};

fn build(cfg: &BackboneConfig) -> (nn::VarStore, Box<dyn facerec_model::Backbone>) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let b = cfg.build(&vs.root()).unwrap();
    (vs, b)
}

fn n_params(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

#[test]
fn lenet_pp_gives_2d_features_and_the_expected_parameter_count() {
    let (vs, net) = build(&BackboneConfig::new(LenetPpConfig::default()));
    let y = net.forward_t(&Tensor::zeros([3, 1, 28, 28], (Kind::Float, Device::Cpu)), true).unwrap();
    assert_eq!(y.size(), [3, 2]);
    // By hand: conv weights k*k*cin*cout + cout biases + cout PReLU slopes, per layer.
    let conv = |cin: i64, cout: i64| 25 * cin * cout + 2 * cout;
    let expected = conv(1, 32) + conv(32, 32) + conv(32, 64) + conv(64, 64) + conv(64, 128) + conv(128, 128)
        + (128 * 4 * 4 * 2 + 2) + 2;
    assert_eq!(n_params(&vs), expected);
    let names: Vec<String> = vs.variables().into_keys().collect();
    for n in ["conv1_1.weight", "prelu3_2.weight", "fc.weight", "fc.bias", "prelu_fc.weight"] {
        assert!(names.contains(&n.to_string()), "missing {n} in {names:?}");
    }
}

#[test]
fn face_resnet_matches_caffe_face_layout() {
    let (vs, net) = build(&BackboneConfig::new(FaceResnetConfig::default()));
    // Count of the caffe-face network by hand: stage convs have bias, residual convs do not.
    let conv = |cin: i64, cout: i64| 9 * cin * cout + cout + cout; // weight, bias, prelu
    let block = |c: i64| 2 * (9 * c * c + c); // two convs without bias, two prelus
    let expected = conv(3, 32) + conv(32, 64) + block(64)
        + conv(64, 128) + 2 * block(128)
        + conv(128, 256) + 5 * block(256)
        + conv(256, 512) + 3 * block(512)
        + (512 * 5 * 4 * 512 + 512);
    assert_eq!(n_params(&vs), expected);
    let y = net.forward_t(&Tensor::zeros([2, 3, 112, 96], (Kind::Float, Device::Cpu)), false).unwrap();
    assert_eq!(y.size(), [2, 512]);
    let names: Vec<String> = vs.variables().into_keys().collect();
    for n in ["conv1a.weight", "layer3.4.conv2.weight", "layer4.2.prelu2.weight", "fc5.weight"] {
        assert!(names.contains(&n.to_string()), "missing {n}");
    }
}

#[test]
fn small_face_resnet_and_iresnet_run() {
    let small = FaceResnetConfig { widths: [8, 16, 32, 64, 128], blocks: [1, 1, 1, 1], feature_dim: 64, ..Default::default() };
    let (_, net) = build(&BackboneConfig::new(small));
    let y = net.forward_t(&Tensor::rand([2, 3, 112, 96], (Kind::Float, Device::Cpu)), true).unwrap();
    assert_eq!(y.size(), [2, 64]);

    let ir = IresnetConfig { layers: Some([1, 1, 1, 1]), base_width: 8, feature_dim: 32, ..Default::default() };
    let (vs, net) = build(&BackboneConfig::new(ir));
    let y = net.forward_t(&Tensor::rand([2, 3, 112, 112], (Kind::Float, Device::Cpu)), true).unwrap();
    assert_eq!(y.size(), [2, 32]);
    let names: Vec<String> = vs.variables().into_keys().collect();
    for n in ["layer1.0.downsample.0.weight", "layer2.0.bn3.running_var", "features.weight", "fc.bias"] {
        assert!(names.contains(&n.to_string()), "missing {n}");
    }
}

#[test]
fn wrong_input_shape_is_an_error_not_a_panic() {
    let (_, net) = build(&BackboneConfig::new(LenetPpConfig::default()));
    let err = net.forward_t(&Tensor::zeros([2, 3, 28, 28], (Kind::Float, Device::Cpu)), false).unwrap_err();
    assert!(matches!(err, ModelError::InputShape { .. }));
    assert!(err.to_string().contains("[batch, 1, 28, 28]"), "{err}");
}

#[test]
fn backbone_names_and_fields_are_checked_when_parsing() {
    let ok: BackboneConfig = toml::from_str("name = \"face_resnet\"\nfeature_dim = 256").unwrap();
    assert_eq!(ok.feature_dim(), 256);
    let err = toml::from_str::<BackboneConfig>("name = \"face_resnt\"").unwrap_err().to_string();
    assert!(err.contains("face_resnt"), "{err}");
    let err = toml::from_str::<BackboneConfig>("name = \"lenet_pp\"\nfeature_dims = 2").unwrap_err().to_string();
    assert!(err.contains("feature_dims"), "{err}");
    let err = toml::from_str::<BackboneConfig>("name = \"iresnet\"\ndepth = 7")
        .map(|c| c.build(&nn::VarStore::new(Device::Cpu).root()).map(|_| ()))
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.contains("depth 7"), "{err}");
}

#[test]
fn libtorch_cuda_is_linked_into_test_binaries() {
    // The wheel ships libtorch_cuda.so; facerec-build forces it past --as-needed so that a
    // GPU machine really uses CUDA. This holds on CPU-only machines too.
    assert!(facerec_model::device::cuda_linked(), "libtorch_cuda.so is not loaded: check facerec-build");
}

/// docs/adding-a-backbone.md's copy of the registry is the code's, plus the one line it adds.
#[test]
fn the_docs_registry_is_the_codes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let (doc, code) = (read("docs/adding-a-backbone.md"), read("crates/model/src/backbone.rs"));
    let lines = |text: &str| -> Vec<String> {
        let start = text.find("static BACKBONES").expect("the registry");
        text[start..].lines().take_while(|l| !l.starts_with("});")).filter(|l| !l.contains("MyNet")).map(str::to_owned).collect()
    };
    assert_eq!(lines(&doc), lines(&code), "docs/adding-a-backbone.md's registry differs from crates/model/src/backbone.rs's");
    assert!(doc.contains("registry.add(erase::<MyNetConfig>);"));
}
