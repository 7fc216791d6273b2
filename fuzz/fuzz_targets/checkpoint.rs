//! Fuzz the training-checkpoint reader (NPZ members matched against a small network and its
//! optimizer): errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use temper_converter::train::{arch, checkpoint, Net, Optimizer, OptimizerKind};

fn fresh() -> (Net, Optimizer) {
    static GRAPH: OnceLock<temper_converter::ir::Graph> = OnceLock::new();
    let g = GRAPH.get_or_init(|| arch::build("small-cnn", 1, 8, 8, 3, 1).expect("small-cnn builds"));
    let net = Net::new(g.clone(), 1).expect("the network builds");
    let opt = Optimizer::new(OptimizerKind::Sgd { momentum: 0.9, nesterov: false }, 0.0, net.params.len());
    (net, opt)
}

fuzz_target!(|data: &[u8]| {
    let (mut net, mut opt) = fresh();
    let _ = checkpoint::load_bytes(data, "fuzz.npz", &mut net, &mut opt, &mut []);
});
