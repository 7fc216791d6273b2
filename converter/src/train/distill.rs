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
        Ok(Distiller { teachers, cfg, cache: None, heads: Vec::new(), classes: 0 })
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

    /// Compute and cache the soft targets of the whole training set (when augmentation is off
    /// and no mimicking head needs teacher activations). Returns the seconds spent.
    pub fn prepare(&mut self, train: &Dataset, norm: &Normalize, aug: Augment, batch: usize) -> Result<f64, TrainError> {
        self.classes = 0;
        if aug.enabled() || !self.heads.is_empty() {
            return Ok(0.0);
        }
        let t0 = std::time::Instant::now();
        let n = train.len();
        let idx: Vec<usize> = (0..n).collect();
        let mut cache = Vec::new();
        for chunk in idx.chunks(batch.max(1)) {
            let x = super::data::batch_tensor(train, chunk, norm);
            let (soft, classes) = self.teacher_soft(&x, false)?.0;
            self.classes = classes;
            cache.extend_from_slice(&soft);
        }
        self.cache = Some(cache);
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
            let k = self.classes;
            let mut out = Vec::with_capacity(idx.len() * k);
            for &i in idx {
                out.extend_from_slice(&c[i * k..(i + 1) * k]);
            }
            return Ok((out, None));
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
    fn pooled_teacher_targets() {
        let t = Tensor { shape: vec![1, 1, 2, 2], data: vec![1.0, 2.0, 3.0, 4.0] };
        assert_eq!(avg_pool_plain(&t, 2).data, vec![2.5]);
    }
}
