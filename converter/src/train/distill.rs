//! Knowledge distillation: teachers, soft targets (cached when the inputs are not augmented),
//! α schedules and feature mimicking with learned 1×1 adapters.

use super::data::{fill_batch, Augment, Rng};
use super::loss::softmax_t;
use super::net::{Mode, Net, Tape};
use super::optim::{Optimizer, OptimizerKind};
use super::TrainError;
use crate::fp32::Tensor;
use crate::ir::{Activation, ConstData, Graph, Node, Op, TensorId, Window};
use temper_data::{Dataset, Normalize};

/// How α (the weight of the distillation term) evolves with training progress `p ∈ [0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AlphaSchedule {
    /// α throughout.
    Constant,
    /// Distillation-heavy to label-heavy: `α·(1 − p) + α_end·p`.
    Decay {
        /// α at the end of training.
        end: f32,
    },
    /// Ramp-up: `α·min(1, p / ramp)` (ramp 0.3 by default).
    Warmup {
        /// Fraction of training over which α rises.
        ramp: f32,
    },
}

impl AlphaSchedule {
    /// α at progress `p`.
    pub fn alpha(&self, alpha: f32, p: f32) -> f32 {
        let p = p.clamp(0.0, 1.0);
        match *self {
            AlphaSchedule::Constant => alpha,
            AlphaSchedule::Decay { end } => alpha * (1.0 - p) + end * p,
            AlphaSchedule::Warmup { ramp } => alpha * (p / ramp.max(1e-6)).min(1.0),
        }
    }

    /// Parse `constant`, `decay` (with `end`) or `warmup`.
    pub fn parse(s: &str, end: f32) -> Result<AlphaSchedule, String> {
        match s {
            "constant" => Ok(AlphaSchedule::Constant),
            "decay" => Ok(AlphaSchedule::Decay { end }),
            "warmup" => Ok(AlphaSchedule::Warmup { ramp: 0.3 }),
            o => Err(format!("unknown alpha schedule '{o}' (constant, decay, warmup)")),
        }
    }
}

/// A frozen teacher network and its weight in the soft-target mixture.
#[derive(Clone, Debug)]
pub struct Teacher {
    /// Label for messages (usually the file name).
    pub name: String,
    /// The network (run in [`Mode::Eval`]).
    pub net: Net,
    /// Mixture weight (normalized over teachers before use).
    pub weight: f32,
}

/// Feature mimicking: an L2 loss between a student tensor and a teacher tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MimicSpec {
    /// Student tensor name.
    pub student: String,
    /// Teacher tensor name (in the first teacher).
    pub teacher: String,
}

impl MimicSpec {
    /// Parse `STUDENT_TENSOR:TEACHER_TENSOR`.
    pub fn parse(s: &str) -> Result<MimicSpec, String> {
        match s.rsplit_once('=').or_else(|| s.rsplit_once(':')) {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok(MimicSpec { student: a.to_string(), teacher: b.to_string() }),
            _ => Err(format!("--mimic '{s}': expected STUDENT_TENSOR=TEACHER_TENSOR")),
        }
    }
}

/// Distillation settings.
#[derive(Clone, Debug)]
pub struct KdConfig {
    /// Temperature T.
    pub temperature: f32,
    /// α (weight of `T²·KL`; `1 − α` weighs the label cross-entropy).
    pub alpha: f32,
    /// α schedule.
    pub schedule: AlphaSchedule,
    /// Feature-mimicking pairs.
    pub mimic: Vec<MimicSpec>,
    /// Weight of each mimicking L2 term.
    pub mimic_weight: f32,
}

/// One feature-mimicking head: student tensor → 1×1 adapter (when channels differ) → average
/// pooling (when the student map is larger) → L2 against the teacher tensor (pooled when it is
/// the larger one).
#[derive(Clone, Debug)]
pub struct MimicHead {
    /// The pair.
    pub spec: MimicSpec,
    student_id: TensorId,
    teacher_id: TensorId,
    /// Adapter network (1×1 conv and/or pooling; identity graph when shapes already agree).
    pub adapter: Net,
    /// Adapter optimizer state.
    pub opt: Optimizer,
    teacher_pool: usize,
}

/// Teachers, soft-target cache and mimicking heads.
#[derive(Clone, Debug)]
pub struct Distiller {
    /// Teachers.
    pub teachers: Vec<Teacher>,
    /// Settings.
    pub cfg: KdConfig,
    /// Cached soft targets (`[N_train, C]`, teacher mixture at temperature T), when the training
    /// inputs are not augmented and no feature mimicking needs teacher activations.
    cache: Option<Vec<f32>>,
    /// Feature-mimicking heads.
    pub heads: Vec<MimicHead>,
    classes: usize,
    /// Cached views per image: 1 (plain) or 2 (plain and horizontally flipped, for flip-only
    /// augmentation).
    views: usize,
    /// Per image and view, a hash of the normalized input, to recognize which view a training
    /// row is (`[views][N]`).
    view_keys: Vec<u64>,
    /// Optional file keeping the teachers' logits between runs (NPZ; reused when the teachers,
    /// the data, the normalization and the views match, recomputed otherwise).
    pub cache_file: Option<std::path::PathBuf>,
    /// Whether the last [`Distiller::prepare`] read the teacher logits from `cache_file`.
    pub cache_loaded: bool,
}

/// Top-1 accuracy (percent) and mean cross-entropy of `net` on `ds` in eval mode.
pub fn evaluate(net: &Net, ds: &Dataset, norm: &Normalize, batch: usize) -> Result<(f64, f64), TrainError> {
    let mut correct = 0usize;
    let mut loss = 0.0f64;
    let n = ds.len();
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let x = super::data::batch_tensor(ds, chunk, norm);
        let tape = net.forward(&[x], Mode::Eval)?;
        let y = net.outputs(&tape)[0];
        let classes = y.shape[1];
        let labels: Vec<u32> = chunk.iter().map(|&i| ds.labels[i]).collect();
        let out = super::loss::distill_loss(&y.data, classes, &labels, None, 0.0, 1.0);
        correct += out.correct;
        loss += out.ce * chunk.len() as f64;
    }
    Ok((correct as f64 * 100.0 / n.max(1) as f64, loss / n.max(1) as f64))
}

impl Distiller {
    /// A distiller; teacher weights are normalized to sum 1.
    pub fn new(mut teachers: Vec<Teacher>, cfg: KdConfig) -> Result<Distiller, TrainError> {
        if teachers.is_empty() {
            return Err(TrainError::Config("distillation needs at least one teacher".into()));
        }
        let sum: f32 = teachers.iter().map(|t| t.weight.max(0.0)).sum();
        if sum <= 0.0 {
            return Err(TrainError::Config("teacher weights must not all be zero".into()));
        }
        for t in &mut teachers {
            t.weight = t.weight.max(0.0) / sum;
            t.net.freeze();
        }
        Ok(Distiller {
            teachers,
            cfg,
            cache: None,
            heads: Vec::new(),
            classes: 0,
            views: 1,
            view_keys: Vec::new(),
            cache_file: None,
            cache_loaded: false,
        })
    }

    /// Set the teacher weights proportional to their top-1 accuracy on `val`; returns the
    /// accuracies (percent).
    pub fn weigh_by_accuracy(&mut self, val: &Dataset, norm: &Normalize) -> Result<Vec<f64>, TrainError> {
        let accs: Vec<f64> = self.teachers.iter().map(|t| evaluate(&t.net, val, norm, 500).map(|a| a.0)).collect::<Result<_, _>>()?;
        let sum: f64 = accs.iter().sum();
        for (t, a) in self.teachers.iter_mut().zip(&accs) {
            t.weight = if sum > 0.0 { (a / sum) as f32 } else { 1.0 / accs.len() as f32 };
        }
        Ok(accs)
    }

    /// Build the mimicking heads against `student` (whose graph is probed at batch 1).
    pub fn attach_mimic(&mut self, student: &Net, opt: OptimizerKind, seed: u64) -> Result<(), TrainError> {
        let sg = student.graph();
        let teacher = &self.teachers[0].net;
        let tg = teacher.graph();
        for (i, spec) in self.cfg.mimic.clone().into_iter().enumerate() {
            let sid = student
                .tensor_id(&spec.student)
                .ok_or_else(|| TrainError::Config(format!("--mimic: student has no tensor '{}'", spec.student)))?;
            let tid = teacher
                .tensor_id(&spec.teacher)
                .ok_or_else(|| TrainError::Config(format!("--mimic: teacher has no tensor '{}'", spec.teacher)))?;
            let ss = &sg.tensors[sid].shape;
            let ts = &tg.tensors[tid].shape;
            if ss.len() != 4 || ts.len() != 4 {
                return Err(TrainError::Config(format!("--mimic {}: both tensors must be NCHW (got {ss:?} and {ts:?})", spec.student)));
            }
            let (mut pool, mut teacher_pool) = (1, 1);
            if ss[2] > ts[2] {
                pool = ss[2] / ts[2];
                if !ss[2].is_multiple_of(ts[2]) || ss[3] != ts[3] * pool {
                    return Err(TrainError::Config(format!("--mimic: spatial sizes {ss:?} and {ts:?} differ by a non-integer factor")));
                }
            } else if ts[2] > ss[2] {
                teacher_pool = ts[2] / ss[2];
                if !ts[2].is_multiple_of(ss[2]) || ts[3] != ss[3] * teacher_pool {
                    return Err(TrainError::Config(format!("--mimic: spatial sizes {ss:?} and {ts:?} differ by a non-integer factor")));
                }
            }
            let adapter = adapter_graph(i, ss[1], ts[1], [ss[2], ss[3]], pool, seed);
            let mut anet = Net::new(adapter, student.threads)?;
            anet.threads = student.threads;
            let n = anet.params.len();
            self.heads.push(MimicHead {
                spec,
                student_id: sid,
                teacher_id: tid,
                adapter: anet,
                opt: Optimizer::new(opt, 0.0, n),
                teacher_pool,
            });
        }
        Ok(())
    }

    /// Whether soft targets come from the cache.
    pub fn cached(&self) -> bool {
        self.cache.is_some()
    }

    /// Compute and cache the soft targets of the whole training set when the teachers' inputs
    /// are known in advance: augmentation off, or horizontal flip only (both views are cached
    /// and each training row is matched to its view exactly), and no feature mimicking needs
    /// teacher activations. With [`Distiller::cache_file`] the teachers' logits are read from /
    /// written to that file. Returns the seconds spent.
    pub fn prepare(&mut self, train: &Dataset, norm: &Normalize, aug: Augment, batch: usize) -> Result<f64, TrainError> {
        self.classes = 0;
        self.cache = None;
        self.cache_loaded = false;
        if aug.crop_pad > 0 || !self.heads.is_empty() {
            return Ok(0.0);
        }
        let t0 = std::time::Instant::now();
        let views = if aug.flip { 2 } else { 1 };
        let n = train.len();
        let idx: Vec<usize> = (0..n).collect();
        // Per-view input keys, and the cache key over teachers, data, normalization and views.
        let mut view_keys = vec![0u64; views * n];
        let mut key = fnv(FNV0, &[views as u64, n as u64, self.teachers.len() as u64]);
        for chunk in idx.chunks(batch.max(1)) {
            let mut x = super::data::batch_tensor(train, chunk, norm);
            for v in 0..views {
                if v == 1 {
                    flip_rows(&mut x);
                }
                let il = x.data.len() / chunk.len().max(1);
                for (r, &i) in chunk.iter().enumerate() {
                    let h = hash_f32(&x.data[r * il..(r + 1) * il]);
                    view_keys[v * n + i] = h;
                    key = fnv(key, &[h]);
                }
            }
        }
        key = fnv(key, &train.labels.iter().map(|&l| l as u64).collect::<Vec<_>>());
        for t in &self.teachers {
            for p in &t.net.params {
                key = fnv(key, &[hash_f32(&p.value)]);
            }
        }
        let k = self.teachers.len();
        let loaded = self.cache_file.as_deref().and_then(|f| load_logits(f, key, k, views * n));
        let (logits, classes) = match loaded {
            Some(v) => {
                self.cache_loaded = true;
                v
            }
            None => {
                // logits[teacher][view · N + i][class]
                let mut logits: Vec<Vec<f32>> = vec![Vec::new(); k];
                let mut classes = 0;
                for v in 0..views {
                    for chunk in idx.chunks(batch.max(1)) {
                        let mut x = super::data::batch_tensor(train, chunk, norm);
                        if v == 1 {
                            flip_rows(&mut x);
                        }
                        for (t, out) in self.teachers.iter().zip(logits.iter_mut()) {
                            let tape = t.net.forward(std::slice::from_ref(&x), Mode::Eval)?;
                            let y = t.net.outputs(&tape)[0];
                            if classes != 0 && classes != y.shape[1] {
                                return Err(TrainError::Config(format!(
                                    "teacher '{}' has {} classes, unlike the first teacher",
                                    t.name, y.shape[1]
                                )));
                            }
                            classes = y.shape[1];
                            out.extend_from_slice(&y.data);
                        }
                    }
                }
                if let Some(f) = &self.cache_file {
                    save_logits(f, key, &logits, classes)?;
                }
                (logits, classes)
            }
        };
        let mut mix = vec![0.0f32; views * n * classes];
        for (t, l) in self.teachers.iter().zip(&logits) {
            let p = softmax_t(l, classes, self.cfg.temperature);
            for (m, v) in mix.iter_mut().zip(&p) {
                *m += t.weight * v;
            }
        }
        self.classes = classes;
        self.views = views;
        self.view_keys = view_keys;
        self.cache = Some(mix);
        Ok(t0.elapsed().as_secs_f64())
    }

    /// Mixture soft targets of `x` and, if `keep`, the first teacher's tape.
    #[allow(clippy::type_complexity)]
    fn teacher_soft(&self, x: &Tensor, keep: bool) -> Result<((Vec<f32>, usize), Option<Tape>), TrainError> {
        let mut mix: Vec<f32> = Vec::new();
        let mut classes = 0;
        let mut kept = None;
        for (k, t) in self.teachers.iter().enumerate() {
            let tape = t.net.forward(std::slice::from_ref(x), Mode::Eval)?;
            let y = t.net.outputs(&tape)[0];
            classes = y.shape[1];
            let p = softmax_t(&y.data, classes, self.cfg.temperature);
            if mix.is_empty() {
                mix = vec![0.0; p.len()];
            } else if mix.len() != p.len() {
                return Err(TrainError::Config(format!("teacher '{}' has {classes} classes, unlike the first teacher", t.name)));
            }
            for (m, v) in mix.iter_mut().zip(&p) {
                *m += t.weight * v;
            }
            if keep && k == 0 {
                kept = Some(tape);
            }
        }
        Ok(((mix, classes), kept))
    }

    /// Soft targets for the batch `idx` whose (possibly augmented) inputs are `x`, and the first
    /// teacher's tape when mimicking heads need it.
    pub fn soft_targets(&self, idx: &[usize], x: &Tensor) -> Result<(Vec<f32>, Option<Tape>), TrainError> {
        if let Some(c) = &self.cache {
            let (k, n) = (self.classes, self.view_keys.len() / self.views.max(1));
            let il = x.data.len() / idx.len().max(1);
            let mut out = Vec::with_capacity(idx.len() * k);
            let mut all_found = true;
            for (r, &i) in idx.iter().enumerate() {
                // Which cached view is this row? (Rows equal to no view: run the teachers.)
                let h = if self.views > 1 { hash_f32(&x.data[r * il..(r + 1) * il]) } else { 0 };
                let v = (0..self.views).find(|&v| self.views == 1 || self.view_keys[v * n + i] == h);
                match v {
                    Some(v) => out.extend_from_slice(&c[(v * n + i) * k..(v * n + i + 1) * k]),
                    None => {
                        all_found = false;
                        break;
                    }
                }
            }
            if all_found {
                return Ok((out, None));
            }
        }
        let ((soft, _), tape) = self.teacher_soft(x, !self.heads.is_empty())?;
        Ok((soft, tape))
    }

    /// Feature-mimicking losses: returns (loss sum, seeds for the student's backward pass).
    /// Adapter gradients are accumulated (call [`Distiller::step_adapters`] afterwards).
    #[allow(clippy::type_complexity)]
    pub fn mimic_losses(&mut self, student: &Tape, teacher: &Tape) -> Result<(f64, Vec<(TensorId, Vec<f32>)>), TrainError> {
        let mut total = 0.0;
        let mut seeds = Vec::new();
        let w = self.cfg.mimic_weight;
        for h in &mut self.heads {
            let f = student
                .value(h.student_id)
                .ok_or_else(|| TrainError::Graph(format!("mimic: student tensor '{}' not computed", h.spec.student)))?;
            let t = teacher
                .value(h.teacher_id)
                .ok_or_else(|| TrainError::Graph(format!("mimic: teacher tensor '{}' not computed", h.spec.teacher)))?;
            let target = if h.teacher_pool > 1 { avg_pool_plain(t, h.teacher_pool) } else { t.clone() };
            let atape = h.adapter.forward(std::slice::from_ref(f), Mode::Train)?;
            let a = h.adapter.outputs(&atape)[0];
            if a.shape != target.shape {
                return Err(TrainError::Graph(format!(
                    "mimic {}: adapted shape {:?} vs teacher {:?}",
                    h.spec.student, a.shape, target.shape
                )));
            }
            let n = a.data.len().max(1) as f64;
            let mut loss = 0.0f64;
            let grad: Vec<f32> = a
                .data
                .iter()
                .zip(&target.data)
                .map(|(&p, &q)| {
                    let d = (p - q) as f64;
                    loss += d * d;
                    (2.0 * w as f64 * d / n) as f32
                })
                .collect();
            total += w as f64 * loss / n;
            h.adapter.zero_grad();
            let out_id = h.adapter.graph().outputs[0];
            let in_id = h.adapter.graph().inputs[0];
            let g = h.adapter.backward(&atape, vec![(out_id, grad)], &[in_id])?;
            if let Some(Some(gx)) = g.into_iter().next() {
                seeds.push((h.student_id, gx));
            }
        }
        Ok((total, seeds))
    }

    /// One optimizer step of every adapter.
    pub fn step_adapters(&mut self, lr: f32) {
        for h in &mut self.heads {
            h.opt.step(&mut h.adapter.params, lr);
        }
    }
}

fn adapter_graph(i: usize, cs: usize, ct: usize, hw: [usize; 2], pool: usize, seed: u64) -> Graph {
    let mut g = Graph { name: format!("mimic{i}"), ..Default::default() };
    let x = g.add_tensor(format!("mimic{i}.in"), vec![1, cs, hw[0], hw[1]], None);
    g.inputs = vec![x];
    let mut last = x;
    let mut shape = vec![1, cs, hw[0], hw[1]];
    if cs != ct {
        let mut rng = Rng::new(seed, 0xada + i as u64);
        let bound = 1.0 / (cs as f32).sqrt();
        let w: Vec<f32> = (0..ct * cs).map(|_| (rng.next_f32() * 2.0 - 1.0) * bound).collect();
        let wid = g.add_tensor(format!("mimic{i}.w"), vec![ct, cs, 1, 1], Some(ConstData::F32(w)));
        let bid = g.add_tensor(format!("mimic{i}.b"), vec![ct], Some(ConstData::F32(vec![0.0; ct])));
        shape[1] = ct;
        let out = g.add_tensor(format!("mimic{i}.conv"), shape.clone(), None);
        let win = Window { kernel: [1, 1], stride: [1, 1], pads: [0; 4], dilation: [1, 1] };
        g.nodes.push(Node {
            name: format!("mimic{i}.adapter"),
            op: Op::Conv { window: win, group: 1, act: Activation::None },
            inputs: vec![last, wid, bid],
            outputs: vec![out],
        });
        last = out;
    }
    if pool > 1 {
        shape[2] /= pool;
        shape[3] /= pool;
        let out = g.add_tensor(format!("mimic{i}.pool"), shape.clone(), None);
        let win = Window { kernel: [pool, pool], stride: [pool, pool], pads: [0; 4], dilation: [1, 1] };
        g.nodes.push(Node {
            name: format!("mimic{i}.resize"),
            op: Op::AvgPool { window: win, ceil_mode: false, count_include_pad: false },
            inputs: vec![last],
            outputs: vec![out],
        });
        last = out;
    }
    if last == x {
        let out = g.add_tensor(format!("mimic{i}.id"), shape, None);
        g.nodes.push(Node { name: format!("mimic{i}.identity"), op: Op::Reshape, inputs: vec![x], outputs: vec![out] });
        last = out;
    }
    g.outputs = vec![last];
    g
}

/// Non-overlapping `k×k` average pooling of an NCHW tensor (teacher targets).
fn avg_pool_plain(t: &Tensor, k: usize) -> Tensor {
    let (n, c, h, w) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3]);
    let (oh, ow) = (h / k, w / k);
    let mut out = vec![0.0f32; n * c * oh * ow];
    let inv = 1.0 / (k * k) as f32;
    for p in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = 0.0;
                for dy in 0..k {
                    for dx in 0..k {
                        s += t.data[p * h * w + (oy * k + dy) * w + ox * k + dx];
                    }
                }
                out[(p * oh + oy) * ow + ox] = s * inv;
            }
        }
    }
    Tensor { shape: vec![n, c, oh, ow], data: out }
}

const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over 64-bit words.
fn fnv(mut h: u64, words: &[u64]) -> u64 {
    for w in words {
        for b in w.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

/// Hash of the bit patterns of `v`.
fn hash_f32(v: &[f32]) -> u64 {
    let mut h = FNV0;
    for x in v {
        h ^= x.to_bits() as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
        h ^= h >> 29;
    }
    h
}

/// Flip every NCHW image of `x` horizontally (as [`Augment`]'s flip does).
fn flip_rows(x: &mut Tensor) {
    let w = *x.shape.last().unwrap_or(&1);
    for row in x.data.chunks_mut(w.max(1)) {
        row.reverse();
    }
}

/// Teacher logits `[teachers][rows·classes]` from a cache file written by [`save_logits`] with
/// the same key; `None` when absent, unreadable or stale.
fn load_logits(path: &std::path::Path, key: u64, teachers: usize, rows: usize) -> Option<(Vec<Vec<f32>>, usize)> {
    use temper_data::npy::{read_npz, NpyData};
    let members = read_npz(path).ok()?;
    let get = |name: &str| members.iter().find(|(k, _)| k == name).map(|(_, a)| a);
    match &get("key")?.data {
        NpyData::I64(k) if k.len() == 1 && k[0] as u64 == key => {}
        _ => return None,
    }
    let a = get("logits")?;
    if a.shape.len() != 3 || a.shape[0] != teachers || a.shape[1] != rows || a.shape[2] == 0 {
        return None;
    }
    let classes = a.shape[2];
    match &a.data {
        NpyData::F32(v) => Some((v.chunks(rows * classes).map(|c| c.to_vec()).collect(), classes)),
        _ => None,
    }
}

/// Write the teachers' logits and their key to `path` (NPZ: `key` i64 `[1]`, `logits` f32
/// `[teachers, rows, classes]`).
fn save_logits(path: &std::path::Path, key: u64, logits: &[Vec<f32>], classes: usize) -> Result<(), TrainError> {
    use temper_data::npy::{write_npz, NpyArray, NpyData};
    let io = |e: temper_data::DataError| TrainError::Io(format!("{}: {e}", path.display()));
    let rows = logits.first().map_or(0, |l| l.len() / classes.max(1));
    let k = NpyArray::new(vec![1], NpyData::I64(vec![key as i64])).map_err(io)?;
    let l = NpyArray::new(vec![logits.len(), rows, classes], NpyData::F32(logits.concat())).map_err(io)?;
    let tmp = path.with_extension("tmp.npz");
    write_npz(&tmp, &[("key", &k), ("logits", &l)]).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))
}

/// Fill `out` with the batch `idx` (augmented with `aug` from `rng`) as a tensor.
pub fn batch_input(ds: &Dataset, idx: &[usize], norm: &Normalize, aug: Augment, rng: &mut Rng, buf: &mut Vec<f32>) -> Tensor {
    fill_batch(ds, idx, norm, aug, rng, buf);
    let [_, c, h, w] = ds.shape;
    Tensor { shape: vec![idx.len(), c, h, w], data: std::mem::take(buf) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_schedules() {
        assert_eq!(AlphaSchedule::Constant.alpha(0.7, 0.5), 0.7);
        let d = AlphaSchedule::Decay { end: 0.1 };
        assert!((d.alpha(0.7, 0.0) - 0.7).abs() < 1e-6 && (d.alpha(0.7, 1.0) - 0.1).abs() < 1e-6 && (d.alpha(0.7, 0.5) - 0.4).abs() < 1e-6);
        let w = AlphaSchedule::Warmup { ramp: 0.3 };
        assert_eq!(w.alpha(0.7, 0.0), 0.0);
        assert!((w.alpha(0.7, 0.15) - 0.35).abs() < 1e-6);
        assert_eq!(w.alpha(0.7, 0.3), 0.7);
        assert_eq!(w.alpha(0.7, 0.9), 0.7);
        assert_eq!(MimicSpec::parse("a.out=b.out").unwrap(), MimicSpec { student: "a.out".into(), teacher: "b.out".into() });
    }

    #[test]
    fn flip_views_are_cached_exactly_and_the_cache_file_is_reused() {
        use temper_data::dataset::Pixels;
        let (n, side) = (40, 12);
        let mut rng = Rng::new(5, 9);
        let px: Vec<u8> = (0..n * side * side).map(|_| rng.below(256) as u8).collect();
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let ds = Dataset::new(Pixels::U8(px), [n, 1, side, side], labels, 3, "t").unwrap();
        let norm = Normalize::new(vec![0.5], vec![0.25], 1.0 / 255.0);
        let teacher = Net::new(super::super::arch::small_cnn(1, side, side, 3, 4), 1).unwrap();
        let kd = KdConfig { temperature: 3.0, alpha: 0.5, schedule: AlphaSchedule::Constant, mimic: vec![], mimic_weight: 1.0 };
        let mut d = Distiller::new(vec![Teacher { name: "t".into(), net: teacher, weight: 1.0 }], kd).unwrap();
        let file = std::env::temp_dir().join(format!("temper-kd-cache-test-{}.npz", std::process::id()));
        let _ = std::fs::remove_file(&file);
        d.cache_file = Some(file.clone());
        let aug = Augment { crop_pad: 0, flip: true };
        d.prepare(&ds, &norm, aug, 16).unwrap();
        assert!(d.cached() && !d.cache_loaded && file.exists());
        let idx: Vec<usize> = (0..n).rev().collect();
        let mut buf = Vec::new();
        let x = batch_input(&ds, &idx, &norm, aug, &mut Rng::new(1, 2), &mut buf);
        let (cached, _) = d.soft_targets(&idx, &x).unwrap();
        let ((direct, _), _) = d.teacher_soft(&x, false).unwrap();
        let diff = cached.iter().zip(&direct).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "cached flip-view soft targets differ from the teacher's by {diff}");
        // Reused from the file (same key), identical targets; another temperature still reuses
        // the logits.
        d.cfg.temperature = 2.0;
        d.prepare(&ds, &norm, aug, 16).unwrap();
        assert!(d.cache_loaded);
        let (again, _) = d.soft_targets(&idx, &x).unwrap();
        let ((direct2, _), _) = d.teacher_soft(&x, false).unwrap();
        assert!(again.iter().zip(&direct2).all(|(a, b)| (a - b).abs() < 1e-5));
        // Different views (no augmentation): the file is stale and recomputed.
        d.prepare(&ds, &norm, Augment::default(), 16).unwrap();
        assert!(!d.cache_loaded && d.cached());
        // Crop: no cache at all.
        d.prepare(&ds, &norm, Augment { crop_pad: 2, flip: true }, 16).unwrap();
        assert!(!d.cached());
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn pooled_teacher_targets() {
        let t = Tensor { shape: vec![1, 1, 2, 2], data: vec![1.0, 2.0, 3.0, 4.0] };
        assert_eq!(avg_pool_plain(&t, 2).data, vec![2.5]);
    }
}
