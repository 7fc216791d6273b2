//! The head config of an anchor-free GFL/DFL detector (PicoDet, PP-YOLOE, YOLOv8 style) and its
//! check against a graph.
//!
//! A config is JSON (`--head head.json`):
//!
//! ```json
//! { "num_classes": 3, "reg_max": 7, "score": "probabilities",
//!   "levels": [ { "stride": 8, "scores": "cls8", "boxes": "reg8" }, … ],
//!   "score_threshold": 0.05, "iou_threshold": 0.6, "top_k": 1000, "max_det": 100,
//!   "class_aware": true }
//! ```
//!
//! `scores` / `boxes` name graph outputs. Each must be, for an input of `H_in × W_in` and
//! `H = ⌈H_in / stride⌉`, `W = ⌈W_in / stride⌉`, either a 4-D NCHW tensor `[1, C, H, W]`
//! (a head left NCHW) or what exporters emit after `Reshape`/`Flatten`/`Transpose`:
//! `[1, H·W, C]` (or `[1, H, W, C]`) with cells row-major and channels last; `C` is
//! `num_classes` for scores and `4·(reg_max+1)` (left, top, right, bottom distributions,
//! side-major) for boxes. [`bind`] follows the layout-only ops back to the 4-D tensor, checks that
//! they only move it to that order (by tracking every element), and makes that tensor the graph
//! output: the runtime stores 4-D activations NHWC, which is `[1, H, W, C]`, the layout the
//! device post-process reads.

use crate::ir::{Graph, Op, TensorId};
use serde::{Deserialize, Serialize};
use temper_runtime::ops::detect_postprocess::{MAX_CLASSES, MAX_DET, MAX_LEVELS, MAX_REG_MAX, MAX_STRIDE, MAX_TOP_K};

/// What the score outputs hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// Raw logits (a sigmoid gives the score).
    Logits,
    /// Scores in `[0, 1]` (the graph applies the sigmoid).
    Probabilities,
}

/// One FPN level of the head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelConfig {
    /// Stride in input pixels.
    pub stride: usize,
    /// Name of the graph output holding the class scores.
    pub scores: String,
    /// Name of the graph output holding the box distributions.
    pub boxes: String,
}

fn d_score_threshold() -> f32 {
    0.05
}
fn d_iou() -> f32 {
    0.6
}
fn d_top_k() -> usize {
    1000
}
fn d_max_det() -> usize {
    100
}
fn d_true() -> bool {
    true
}

/// A GFL/DFL head config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// Classes.
    pub num_classes: usize,
    /// Each side's distribution has `reg_max + 1` bins.
    pub reg_max: usize,
    /// Logits or probabilities.
    pub score: ScoreKind,
    /// The levels, in any order (1..=8).
    pub levels: Vec<LevelConfig>,
    /// Keep candidates scoring at least this (default 0.05).
    #[serde(default = "d_score_threshold")]
    pub score_threshold: f32,
    /// NMS IoU threshold (default 0.6).
    #[serde(default = "d_iou")]
    pub iou_threshold: f32,
    /// Candidates kept for NMS (default 1000).
    #[serde(default = "d_top_k")]
    pub top_k: usize,
    /// Detections per image at most (default 100).
    #[serde(default = "d_max_det")]
    pub max_det: usize,
    /// NMS per class (default true) or across classes.
    #[serde(default = "d_true")]
    pub class_aware: bool,
}

impl HeadConfig {
    /// Parses and range-checks a JSON config; `src` names it in errors.
    pub fn parse(text: &str, src: &str) -> Result<HeadConfig, String> {
        let c: HeadConfig = serde_json::from_str(text).map_err(|e| format!("{src}: head config: {e}"))?;
        c.check().map_err(|e| format!("{src}: head config: {e}"))?;
        Ok(c)
    }

    /// Reads a config file (at most 1 MiB).
    pub fn load(path: &std::path::Path) -> Result<HeadConfig, String> {
        let bytes = temper_data::fsread::read_input(path, 1 << 20, "a head config may have").map_err(|e| e.to_string())?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{}: head config is not UTF-8 text", path.display()))?;
        HeadConfig::parse(&text, &path.display().to_string())
    }

    /// Ranges the device op accepts.
    pub fn check(&self) -> Result<(), String> {
        let within = |v: usize, hi: usize, what: &str| {
            if v == 0 || v > hi {
                return Err(format!("{what} is {v}, must be 1..={hi}"));
            }
            Ok(())
        };
        within(self.num_classes, MAX_CLASSES, "num_classes")?;
        within(self.reg_max, MAX_REG_MAX, "reg_max")?;
        within(self.levels.len(), MAX_LEVELS, "the number of levels")?;
        within(self.top_k, MAX_TOP_K, "top_k")?;
        within(self.max_det, MAX_DET, "max_det")?;
        for (name, v) in [("score_threshold", self.score_threshold), ("iou_threshold", self.iou_threshold)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} is {v}, must be a number in [0, 1]"));
            }
        }
        for (i, l) in self.levels.iter().enumerate() {
            within(l.stride, MAX_STRIDE, &format!("levels[{i}].stride"))?;
            let names: Vec<&str> = self.levels.iter().flat_map(|l| [l.scores.as_str(), l.boxes.as_str()]).collect();
            for n in [&l.scores, &l.boxes] {
                if names.iter().filter(|m| **m == n.as_str()).count() > 1 {
                    return Err(format!("levels[{i}]: output '{n}' is named more than once"));
                }
            }
        }
        Ok(())
    }

    /// Channels of a box output: `4·(reg_max+1)`.
    pub fn box_channels(&self) -> usize {
        4 * (self.reg_max + 1)
    }
}

/// One level bound to the graph: the 4-D NCHW tensors `[1, C, H, W]` that are now graph outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundLevel {
    /// Stride.
    pub stride: usize,
    /// Score tensor (NCHW).
    pub scores: TensorId,
    /// Box tensor (NCHW).
    pub boxes: TensorId,
    /// Cells high.
    pub h: usize,
    /// Cells wide.
    pub w: usize,
}

/// The head bound to a graph: [`bind`]'s result.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundHead {
    /// The config.
    pub cfg: HeadConfig,
    /// Levels in config order.
    pub levels: Vec<BoundLevel>,
    /// Input height and width in pixels.
    pub image_h: usize,
    /// Input width.
    pub image_w: usize,
}

/// Follows `t` back through layout-only ops (Reshape, Transpose, Identity) to a 4-D tensor and
/// checks the chain is `NCHW → [1, H·W, C]` / `[1, H, W, C]` order, or `t` is that 4-D tensor.
fn trace(g: &Graph, t: TensorId, what: &str) -> Result<TensorId, String> {
    let name = &g.tensors[t].name;
    // Walk back to the first tensor that is 4-D and not produced by a layout op (or is the output).
    let mut chain = Vec::new();
    let mut cur = t;
    while g.tensors[cur].shape.len() != 4 || !chain.is_empty() && is_layout(g, cur) {
        let p = g.producer(cur).ok_or_else(|| format!("{what} output '{name}' has no producer op"))?;
        if !is_layout(g, cur) {
            return Err(format!(
                "{what} output '{name}' is {:?}, produced by a {} op from a non-4-D tensor: expected a [1, C, H, W] head output \
                 or one reshaped/transposed to [1, H*W, C]",
                g.tensors[t].shape,
                g.nodes[p].op.name()
            ));
        }
        chain.push(p);
        cur = g.nodes[p].inputs[0];
        if chain.len() > 16 {
            return Err(format!("{what} output '{name}': more than 16 layout ops before it"));
        }
    }
    if chain.is_empty() {
        return Ok(t);
    }
    // Track every element: start with the NHWC position of each NCHW element, apply the chain.
    let s = &g.tensors[cur].shape;
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let mut idx: Vec<usize> = Vec::with_capacity(n * c * h * w);
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    idx.push(((b * h + y) * w + x) * c + ch);
                }
            }
        }
    }
    let mut shape = s.clone();
    for &p in chain.iter().rev() {
        let nd = &g.nodes[p];
        if let Op::Transpose { perm } = &nd.op {
            idx = transpose(&idx, &shape, perm);
        }
        shape = g.tensors[nd.outputs[0]].shape.clone();
    }
    let out = &g.tensors[t].shape;
    let order_ok = idx.iter().enumerate().all(|(i, &v)| i == v);
    let shape_ok = out == &[1, h * w, c] || out == &[1, h, w, c];
    if !order_ok || !shape_ok || n != 1 {
        return Err(format!(
            "{what} output '{name}' is {out:?} from the 4-D tensor '{}' {s:?}: the ops between them must only bring it to \
             [1, H*W, C] (cells row-major, channels last) or [1, H, W, C]",
            g.tensors[cur].name
        ));
    }
    Ok(cur)
}

fn is_layout(g: &Graph, t: TensorId) -> bool {
    g.producer(t).is_some_and(|p| matches!(g.nodes[p].op, Op::Reshape | Op::Transpose { .. } | Op::Identity))
}

/// Permutes a row-major array of `shape` by `perm` (ONNX Transpose).
fn transpose(x: &[usize], shape: &[usize], perm: &[usize]) -> Vec<usize> {
    let r = shape.len();
    if perm.len() != r {
        return x.to_vec();
    }
    let oshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut istr = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        istr[i] = istr[i + 1] * shape[i + 1];
    }
    let mut out = Vec::with_capacity(x.len());
    let mut pos = vec![0usize; r];
    for _ in 0..x.len() {
        let off: usize = (0..r).map(|k| pos[k] * istr[perm[k]]).sum();
        out.push(x[off]);
        for k in (0..r).rev() {
            pos[k] += 1;
            if pos[k] < oshape[k] {
                break;
            }
            pos[k] = 0;
        }
    }
    out
}

/// Checks `cfg` against `g` and rewrites `g` so its outputs are the head's 4-D tensors, levels in
/// config order (`scores₀, boxes₀, scores₁, …`); the layout ops after them are removed. Every
/// graph output must be named by the config. Errors name the output and the mismatch.
pub fn bind(g: &mut Graph, cfg: &HeadConfig) -> Result<BoundHead, String> {
    cfg.check()?;
    super::rewrite::split_sliced_convs(g);
    let input = g.inputs.first().map(|&i| g.tensors[i].shape.clone()).ok_or("the model has no graph input")?;
    if input.len() != 4 || input[0] != 1 {
        return Err(format!("the model input '{}' is {input:?}: a detector takes one [1, C, H, W] image", g.tensors[g.inputs[0]].name));
    }
    let (ih, iw) = (input[2], input[3]);
    let find = |n: &str, what: &str| -> Result<TensorId, String> {
        g.outputs.iter().copied().find(|&o| g.tensors[o].name == n).ok_or_else(|| {
            let names: Vec<&str> = g.outputs.iter().map(|&o| g.tensors[o].name.as_str()).collect();
            format!("head config names {what} output '{n}', which is not a graph output (outputs: {})", names.join(", "))
        })
    };
    let mut levels = Vec::new();
    let mut named = Vec::new();
    for (i, l) in cfg.levels.iter().enumerate() {
        let (h, w) = (ih.div_ceil(l.stride), iw.div_ceil(l.stride));
        let mut pair = [0; 2];
        for (k, (n, what, ch)) in [(&l.scores, "scores", cfg.num_classes), (&l.boxes, "boxes", cfg.box_channels())].into_iter().enumerate()
        {
            let o = find(n, what)?;
            named.push(o);
            let src = trace(g, o, what)?;
            let s = &g.tensors[src].shape;
            if s[..] != [1, ch, h, w] {
                let expect = if what == "scores" { "num_classes" } else { "4*(reg_max+1)" };
                return Err(format!(
                    "levels[{i}] {what} output '{n}': its head tensor '{}' is {s:?} (NCHW) but the config needs [1, {ch}, {h}, {w}] \
                     ({expect} = {ch}; stride {} on a {ih}x{iw} input gives {h}x{w} cells)",
                    g.tensors[src].name, l.stride
                ));
            }
            pair[k] = src;
        }
        levels.push(BoundLevel { stride: l.stride, scores: pair[0], boxes: pair[1], h, w });
    }
    if let Some(&o) = g.outputs.iter().find(|o| !named.contains(o)) {
        return Err(format!(
            "graph output '{}' is not named by the head config (every output must be a level's scores or boxes)",
            g.tensors[o].name
        ));
    }
    g.outputs = levels.iter().flat_map(|l| [l.scores, l.boxes]).collect();
    prune(g);
    Ok(BoundHead { cfg: cfg.clone(), levels, image_h: ih, image_w: iw })
}

/// Removes nodes whose outputs nothing uses.
fn prune(g: &mut Graph) {
    loop {
        let dead = g.nodes.iter().position(|n| n.outputs.iter().all(|&o| !g.outputs.contains(&o) && g.consumers(o).is_empty()));
        match dead {
            Some(i) => {
                g.nodes.remove(i);
            }
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_permutes_like_onnx() {
        // [2, 3] → perm [1, 0] → [3, 2].
        let x: Vec<usize> = (0..6).collect();
        assert_eq!(transpose(&x, &[2, 3], &[1, 0]), vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn configs_out_of_range_are_refused_by_name() {
        let ok = r#"{"num_classes":3,"reg_max":7,"score":"logits","levels":[{"stride":8,"scores":"a","boxes":"b"}]}"#;
        let c = HeadConfig::parse(ok, "h.json").unwrap();
        assert_eq!((c.top_k, c.max_det, c.class_aware), (1000, 100, true));
        for (bad, what) in [
            (ok.replace("\"reg_max\":7", "\"reg_max\":0"), "reg_max is 0"),
            (ok.replace("\"num_classes\":3", "\"num_classes\":5000"), "num_classes is 5000"),
            (ok.replace("\"stride\":8", "\"stride\":0"), "levels[0].stride is 0"),
            (ok.replace("\"boxes\":\"b\"", "\"boxes\":\"a\""), "named more than once"),
            (ok.replace("\"logits\"", "\"softmax\""), "unknown variant"),
            (ok.replace("}]}", "}],\"anchors\":[1]}"), "unknown field"),
            (ok.replace("}]}", "}],\"iou_threshold\":1.5}"), "iou_threshold is 1.5"),
            (ok[..20].to_string(), "EOF"),
        ] {
            let e = HeadConfig::parse(&bad, "h.json").unwrap_err();
            assert!(e.contains("h.json") && e.contains(what), "{bad}: {e}");
        }
    }
}
