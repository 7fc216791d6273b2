//! Optimizers (SGD with momentum/Nesterov, Adam, AdamW) and learning-rate schedules (constant,
//! step, cosine; linear warm-up).

use super::net::Param;

/// Optimizer algorithm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// SGD with (optionally Nesterov) momentum; weight decay is L2 added to the gradient.
    Sgd {
        /// Momentum (0 = plain SGD).
        momentum: f32,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// Adam; weight decay is L2 added to the gradient.
    Adam {
        /// β₁.
        beta1: f32,
        /// β₂.
        beta2: f32,
        /// ε.
        eps: f32,
    },
    /// AdamW: Adam with decoupled weight decay (`w -= lr·wd·w`).
    AdamW {
        /// β₁.
        beta1: f32,
        /// β₂.
        beta2: f32,
        /// ε.
        eps: f32,
    },
}

impl OptimizerKind {
    /// Parse `sgd`, `adam` or `adamw` (momentum/nesterov given separately for SGD).
    pub fn parse(s: &str, momentum: f32, nesterov: bool) -> Result<OptimizerKind, String> {
        match s {
            "sgd" => Ok(OptimizerKind::Sgd { momentum, nesterov }),
            "adam" => Ok(OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }),
            "adamw" => Ok(OptimizerKind::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8 }),
            o => Err(format!("unknown optimizer '{o}' (sgd, adam, adamw)")),
        }
    }

    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd { nesterov: true, .. } => "sgd+nesterov",
            OptimizerKind::Sgd { .. } => "sgd",
            OptimizerKind::Adam { .. } => "adam",
            OptimizerKind::AdamW { .. } => "adamw",
        }
    }
}

/// Optimizer state for a list of parameters.
#[derive(Clone, Debug)]
pub struct Optimizer {
    /// Algorithm.
    pub kind: OptimizerKind,
    /// Weight decay (applies to parameters whose [`ParamKind::decays`](super::ParamKind::decays)).
    pub weight_decay: f32,
    /// Steps taken.
    pub steps: u64,
    /// First-moment / momentum buffer per parameter (empty until used).
    pub m: Vec<Vec<f32>>,
    /// Second-moment buffer per parameter (Adam/AdamW).
    pub v: Vec<Vec<f32>>,
}

impl Optimizer {
    /// A fresh optimizer for `n_params` parameters.
    pub fn new(kind: OptimizerKind, weight_decay: f32, n_params: usize) -> Optimizer {
        Optimizer { kind, weight_decay, steps: 0, m: vec![Vec::new(); n_params], v: vec![Vec::new(); n_params] }
    }

    /// One update of every trainable parameter from its accumulated gradient, with rate `lr`.
    pub fn step(&mut self, params: &mut [Param], lr: f32) {
        self.steps += 1;
        let t = self.steps as i32;
        for (i, p) in params.iter_mut().enumerate() {
            if !p.trainable() {
                continue;
            }
            let wd = if p.kind.decays() { self.weight_decay } else { 0.0 };
            let m = &mut self.m[i];
            if m.len() != p.value.len() {
                *m = vec![0.0; p.value.len()];
            }
            match self.kind {
                OptimizerKind::Sgd { momentum, nesterov } => {
                    for ((w, &g), mv) in p.value.iter_mut().zip(&p.grad).zip(m.iter_mut()) {
                        let g = g + wd * *w;
                        *mv = momentum * *mv + g;
                        let u = if nesterov { g + momentum * *mv } else { *mv };
                        *w -= lr * u;
                    }
                }
                OptimizerKind::Adam { beta1, beta2, eps } | OptimizerKind::AdamW { beta1, beta2, eps } => {
                    let decoupled = matches!(self.kind, OptimizerKind::AdamW { .. });
                    let v = &mut self.v[i];
                    if v.len() != p.value.len() {
                        *v = vec![0.0; p.value.len()];
                    }
                    let bc1 = 1.0 - beta1.powi(t);
                    let bc2 = 1.0 - beta2.powi(t);
                    let step = lr / bc1;
                    let inv_sqrt_bc2 = 1.0 / bc2.sqrt();
                    for (((w, &g), mv), vv) in p.value.iter_mut().zip(&p.grad).zip(m.iter_mut()).zip(v.iter_mut()) {
                        let g = if decoupled { g } else { g + wd * *w };
                        *mv = beta1 * *mv + (1.0 - beta1) * g;
                        *vv = beta2 * *vv + (1.0 - beta2) * g * g;
                        if decoupled {
                            *w -= lr * wd * *w;
                        }
                        *w -= step * *mv / ((*vv).sqrt() * inv_sqrt_bc2 + eps);
                    }
                }
            }
        }
    }
}

/// Learning-rate schedule shape (after warm-up).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScheduleKind {
    /// Constant rate.
    Constant,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: usize,
        /// Factor.
        gamma: f32,
    },
    /// Cosine decay to `min_lr` at the end of training.
    Cosine {
        /// Final rate.
        min_lr: f32,
    },
}

/// Learning-rate schedule with linear warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Peak rate.
    pub base_lr: f32,
    /// Shape after warm-up.
    pub kind: ScheduleKind,
    /// Warm-up steps (rate rises linearly from `base_lr / warmup` to `base_lr`).
    pub warmup_steps: usize,
}

impl Schedule {
    /// Rate at (0-based) `step` of `total` steps, `steps_per_epoch` per epoch.
    pub fn lr(&self, step: usize, total: usize, steps_per_epoch: usize) -> f32 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f32 / self.warmup_steps as f32;
        }
        match self.kind {
            ScheduleKind::Constant => self.base_lr,
            ScheduleKind::Step { every, gamma } => {
                let epoch = step / steps_per_epoch.max(1);
                self.base_lr * gamma.powi((epoch / every.max(1)) as i32)
            }
            ScheduleKind::Cosine { min_lr } => {
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let p = ((step - self.warmup_steps) as f64 / span).min(1.0);
                (min_lr as f64 + (self.base_lr - min_lr) as f64 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())) as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ParamKind;

    fn param(v: Vec<f32>) -> Param {
        Param {
            name: "w".into(),
            tensor: 0,
            shape: vec![v.len()],
            grad: vec![0.0; v.len()],
            value: v,
            kind: ParamKind::Weight,
            layer: "l".into(),
            frozen: false,
        }
    }

    /// Every optimizer minimizes a quadratic `½·Σ a_i (w_i − c_i)²`.
    #[test]
    fn optimizers_minimize_a_quadratic() {
        let a = [1.0f32, 3.0, 0.5];
        let c = [2.0f32, -1.0, 0.5];
        for kind in [
            OptimizerKind::Sgd { momentum: 0.0, nesterov: false },
            OptimizerKind::Sgd { momentum: 0.9, nesterov: false },
            OptimizerKind::Sgd { momentum: 0.9, nesterov: true },
            OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
            OptimizerKind::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
        ] {
            let mut ps = vec![param(vec![0.0; 3])];
            let mut opt = Optimizer::new(kind, 0.0, 1);
            let lr = 0.05;
            for _ in 0..2000 {
                for i in 0..3 {
                    ps[0].grad[i] = a[i] * (ps[0].value[i] - c[i]);
                }
                opt.step(&mut ps, lr);
            }
            for (v, want) in ps[0].value.iter().zip(c) {
                assert!((v - want).abs() < 1e-2, "{kind:?}: {:?}", ps[0].value);
            }
        }
    }

    #[test]
    fn adamw_decays_weights_not_biases() {
        let mut ps = vec![param(vec![1.0]), param(vec![1.0])];
        ps[1].kind = ParamKind::Bias;
        let mut opt = Optimizer::new(OptimizerKind::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, 0.1, 2);
        opt.step(&mut ps, 0.1);
        assert!((ps[0].value[0] - 0.99).abs() < 1e-6);
        assert_eq!(ps[1].value[0], 1.0);
    }

    #[test]
    fn schedules() {
        let s = Schedule { base_lr: 1.0, kind: ScheduleKind::Cosine { min_lr: 0.0 }, warmup_steps: 10 };
        assert!((s.lr(0, 110, 10) - 0.1).abs() < 1e-6);
        assert!((s.lr(9, 110, 10) - 1.0).abs() < 1e-6);
        assert!((s.lr(10, 110, 10) - 1.0).abs() < 1e-6);
        assert!((s.lr(60, 110, 10) - 0.5).abs() < 1e-6);
        assert!(s.lr(109, 110, 10) < 1e-3);
        let st = Schedule { base_lr: 1.0, kind: ScheduleKind::Step { every: 2, gamma: 0.1 }, warmup_steps: 0 };
        assert_eq!(st.lr(19, 100, 10), 1.0);
        assert!((st.lr(20, 100, 10) - 0.1).abs() < 1e-7);
    }
}
