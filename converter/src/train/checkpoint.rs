//! Checkpoints: parameters (with BatchNorm buffers), optimizer state and progress, as an NPZ
//! archive (readable with numpy), written atomically after every epoch.
//!
//! Members: `meta` (i64 `[version, epochs_done, global_step, seed, optimizer_steps, heads]`),
//! `names` (u8, newline-joined parameter names), and per parameter `i`: `p{i}` (value), `m{i}` /
//! `v{i}` (optimizer moments, when allocated). Mimicking adapters use the prefix `h{j}_`.

use std::path::Path;

use super::net::Net;
use super::optim::Optimizer;
use super::TrainError;
use temper_data::npy::{read_npz, read_npz_bytes, write_npz, NpyArray, NpyData};

const VERSION: i64 = 1;

/// Progress stored in a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Completed epochs.
    pub epochs_done: usize,
    /// Optimizer steps taken overall.
    pub global_step: usize,
    /// Training seed.
    pub seed: u64,
}

fn io(e: impl std::fmt::Display) -> TrainError {
    TrainError::Io(e.to_string())
}

fn arrays(prefix: &str, net: &Net, opt: &Optimizer, out: &mut Vec<(String, NpyArray)>) -> Result<(), TrainError> {
    let names: Vec<&str> = net.params.iter().map(|p| p.name.as_str()).collect();
    let nb = names.join("\n").into_bytes();
    out.push((format!("{prefix}names"), NpyArray::new(vec![nb.len()], NpyData::U8(nb)).map_err(io)?));
    out.push((format!("{prefix}opt"), NpyArray::new(vec![1], NpyData::I64(vec![opt.steps as i64])).map_err(io)?));
    for (i, p) in net.params.iter().enumerate() {
        out.push((format!("{prefix}p{i}"), NpyArray::new(p.shape.clone(), NpyData::F32(p.value.clone())).map_err(io)?));
        for (tag, slot) in [("m", &opt.m), ("v", &opt.v)] {
            if let Some(s) = slot.get(i).filter(|s| !s.is_empty()) {
                out.push((format!("{prefix}{tag}{i}"), NpyArray::new(vec![s.len()], NpyData::F32(s.clone())).map_err(io)?));
            }
        }
    }
    Ok(())
}

/// Write a checkpoint of `net` + `opt` (and mimicking adapters) atomically to `path`.
pub fn save(path: &Path, net: &Net, opt: &Optimizer, heads: &[(&Net, &Optimizer)], progress: Progress) -> Result<(), TrainError> {
    let mut all: Vec<(String, NpyArray)> = Vec::new();
    let meta =
        vec![VERSION, progress.epochs_done as i64, progress.global_step as i64, progress.seed as i64, opt.steps as i64, heads.len() as i64];
    all.push(("meta".into(), NpyArray::new(vec![meta.len()], NpyData::I64(meta)).map_err(io)?));
    arrays("", net, opt, &mut all)?;
    for (j, (n, o)) in heads.iter().enumerate() {
        arrays(&format!("h{j}_"), n, o, &mut all)?;
    }
    let refs: Vec<(&str, &NpyArray)> = all.iter().map(|(k, a)| (k.as_str(), a)).collect();
    write_npz(path, &refs).map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))
}

fn restore(prefix: &str, members: &[(String, NpyArray)], net: &mut Net, opt: &mut Optimizer, label: &str) -> Result<(), TrainError> {
    let get = |k: &str| members.iter().find(|(n, _)| n == k).map(|(_, a)| a);
    let bad = |m: String| TrainError::Config(format!("{label}: {m}"));
    let names = match get(&format!("{prefix}names")).map(|a| &a.data) {
        Some(NpyData::U8(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => return Err(bad("no parameter names".into())),
    };
    let names: Vec<&str> = if names.is_empty() { Vec::new() } else { names.split('\n').collect() };
    let want: Vec<&str> = net.params.iter().map(|p| p.name.as_str()).collect();
    if names != want {
        return Err(bad(format!("parameters {names:?} do not match the model's {want:?} (a checkpoint of another model?)")));
    }
    for (i, p) in net.params.iter_mut().enumerate() {
        let a = get(&format!("{prefix}p{i}")).ok_or_else(|| bad(format!("missing parameter '{}'", p.name)))?;
        let v = a.data.to_f32();
        if v.len() != p.value.len() {
            return Err(bad(format!("parameter '{}' has {} values, the model {}", p.name, v.len(), p.value.len())));
        }
        p.value = v;
        for (tag, slot) in [("m", &mut opt.m), ("v", &mut opt.v)] {
            if let Some(a) = get(&format!("{prefix}{tag}{i}")) {
                let v = a.data.to_f32();
                if v.len() != p.value.len() {
                    return Err(bad(format!(
                        "optimizer state '{tag}' of '{}' has {} values, the model {}",
                        p.name,
                        v.len(),
                        p.value.len()
                    )));
                }
                let s = slot.get_mut(i).ok_or_else(|| bad(format!("the optimizer has no state for parameter '{}'", p.name)))?;
                *s = v;
            }
        }
    }
    if let Some(NpyData::I64(s)) = get(&format!("{prefix}opt")).map(|a| &a.data) {
        opt.steps = s.first().copied().unwrap_or(0).max(0) as u64;
    }
    Ok(())
}

/// Restore `net`, `opt` and mimicking adapters from a checkpoint; returns the progress.
pub fn load(path: &Path, net: &mut Net, opt: &mut Optimizer, heads: &mut [(&mut Net, &mut Optimizer)]) -> Result<Progress, TrainError> {
    let label = path.display().to_string();
    let members = read_npz(path).map_err(|e| TrainError::Io(format!("{label}: {e}")))?;
    restore_all(members, &label, net, opt, heads)
}

/// [`load`] from the bytes of a checkpoint (`label` names them in errors); the fuzz target's
/// entry point.
pub fn load_bytes(
    bytes: &[u8],
    label: &str,
    net: &mut Net,
    opt: &mut Optimizer,
    heads: &mut [(&mut Net, &mut Optimizer)],
) -> Result<Progress, TrainError> {
    let members = read_npz_bytes(bytes, label).map_err(|e| TrainError::Io(format!("{label}: {e}")))?;
    restore_all(members, label, net, opt, heads)
}

fn restore_all(
    members: Vec<(String, NpyArray)>,
    label: &str,
    net: &mut Net,
    opt: &mut Optimizer,
    heads: &mut [(&mut Net, &mut Optimizer)],
) -> Result<Progress, TrainError> {
    let label = label.to_string();
    let meta = match members.iter().find(|(k, _)| k == "meta").map(|(_, a)| &a.data) {
        Some(NpyData::I64(m)) if m.len() >= 6 && m[0] == VERSION => m.clone(),
        _ => return Err(TrainError::Config(format!("{label}: not a temper training checkpoint (version {VERSION})"))),
    };
    if meta[5] as usize != heads.len() {
        return Err(TrainError::Config(format!("{label}: has {} mimicking adapters, this run {}", meta[5], heads.len())));
    }
    restore("", &members, net, opt, &label)?;
    for (j, (n, o)) in heads.iter_mut().enumerate() {
        restore(&format!("h{j}_"), &members, n, o, &label)?;
    }
    Ok(Progress { epochs_done: meta[1].max(0) as usize, global_step: meta[2].max(0) as usize, seed: meta[3] as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{arch, OptimizerKind};

    fn small() -> (Net, Optimizer) {
        let net = Net::new(arch::build("small-cnn", 1, 8, 8, 3, 1).unwrap(), 1).unwrap();
        let opt = Optimizer::new(OptimizerKind::Sgd { momentum: 0.9, nesterov: false }, 0.0, net.params.len());
        (net, opt)
    }

    /// A checkpoint read back from its bytes restores the values; damaged ones are errors.
    #[test]
    fn bytes_round_trip_and_damage() {
        let (mut net, opt) = small();
        net.params[0].value.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32 * 0.5);
        let path = std::env::temp_dir().join(format!("temper-ckpt-{}.npz", std::process::id()));
        let progress = Progress { epochs_done: 3, global_step: 7, seed: 9 };
        save(&path, &net, &opt, &[], progress).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        // The fuzz seed of `fuzz/fuzz_targets/checkpoint.rs` (same network) is written on request.
        if let Some(dir) = std::env::var_os("TEMPER_WRITE_CHECKPOINT_SEED") {
            std::fs::write(std::path::Path::new(&dir).join("small_cnn_8x8.npz"), &bytes).unwrap();
        }
        let (mut back, mut opt2) = small();
        assert_eq!(load_bytes(&bytes, "c.npz", &mut back, &mut opt2, &mut []).unwrap(), progress);
        assert_eq!(back.params[0].value, net.params[0].value);
        let (mut other, mut opt3) = small();
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            let e = load_bytes(&bytes[..cut], "c.npz", &mut other, &mut opt3, &mut []).unwrap_err().to_string();
            assert!(e.contains("c.npz"), "{e}");
        }
    }
}
