//! Losses on logits `[B, C]`: cross-entropy and the distillation loss
//! `(1 − α)·CE(s, y) + α·T²·KL(softmax(t/T) ‖ softmax(s/T))` (batch mean).

/// Row-wise `softmax(z / t)` of `[rows, classes]` logits.
pub fn softmax_t(logits: &[f32], classes: usize, t: f32) -> Vec<f32> {
    let mut out = vec![0.0f32; logits.len()];
    for (row, o) in logits.chunks(classes).zip(out.chunks_mut(classes)) {
        let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut sum = 0.0f64;
        for (d, &z) in o.iter_mut().zip(row) {
            let e = (((z - mx) / t) as f64).exp();
            *d = e as f32;
            sum += e;
        }
        let inv = (1.0 / sum) as f32;
        o.iter_mut().for_each(|v| *v *= inv);
    }
    out
}

/// `log softmax(z / t)` of one row, in f64.
fn log_softmax_row(row: &[f32], t: f32) -> Vec<f64> {
    let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let scaled: Vec<f64> = row.iter().map(|&z| (z as f64 - mx) / t as f64).collect();
    let lse = scaled.iter().map(|v| v.exp()).sum::<f64>().ln();
    scaled.iter().map(|v| v - lse).collect()
}

/// Loss value and its gradient w.r.t. the logits.
#[derive(Clone, Debug, Default)]
pub struct LossOut {
    /// Total loss (batch mean).
    pub total: f64,
    /// Cross-entropy part (unweighted, batch mean).
    pub ce: f64,
    /// `T²·KL` part (unweighted, batch mean; 0 without soft targets).
    pub kd: f64,
    /// `∂total/∂logits`, `[B, C]`.
    pub grad: Vec<f32>,
    /// Number of rows whose arg-max equals the label.
    pub correct: usize,
}

/// Top-1 prediction of each row.
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks(classes)
        .map(|r| r.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0)
        .collect()
}

/// Cross-entropy (`labels`), optionally mixed with distillation towards `soft` (teacher
/// probabilities at temperature `t`, `[B, C]`): `(1 − α)·CE + α·T²·KL(soft ‖ softmax(s/T))`.
pub fn distill_loss(logits: &[f32], classes: usize, labels: &[u32], soft: Option<&[f32]>, alpha: f32, t: f32) -> LossOut {
    let b = labels.len();
    assert_eq!(logits.len(), b * classes, "logits do not match the labels");
    let alpha = if soft.is_some() { alpha } else { 0.0 };
    let inv_b = 1.0 / b.max(1) as f64;
    let mut out = LossOut { grad: vec![0.0; logits.len()], ..Default::default() };
    for (r, row) in logits.chunks(classes).enumerate() {
        let y = labels[r] as usize;
        let ls = log_softmax_row(row, 1.0);
        out.ce -= ls[y] * inv_b;
        let g = &mut out.grad[r * classes..(r + 1) * classes];
        for (k, gk) in g.iter_mut().enumerate() {
            let p = ls[k].exp();
            *gk = ((1.0 - alpha as f64) * (p - if k == y { 1.0 } else { 0.0 }) * inv_b) as f32;
        }
        if let Some(soft) = soft {
            let q = &soft[r * classes..(r + 1) * classes];
            let lst = log_softmax_row(row, t);
            let mut kl = 0.0f64;
            for k in 0..classes {
                let qk = q[k] as f64;
                if qk > 0.0 {
                    kl += qk * (qk.ln() - lst[k]);
                }
            }
            let t2 = (t as f64) * (t as f64);
            out.kd += t2 * kl * inv_b;
            // ∂(T²·KL)/∂s_k = T·(softmax(s/T)_k − q_k)
            for (k, gk) in g.iter_mut().enumerate() {
                *gk += (alpha as f64 * t as f64 * (lst[k].exp() - q[k] as f64) * inv_b) as f32;
            }
        }
    }
    out.total = (1.0 - alpha as f64) * out.ce + alpha as f64 * out.kd;
    out.correct = argmax_rows(logits, classes).iter().zip(labels).filter(|(p, &l)| **p == l as usize).count();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let logits: Vec<f32> = (0..12).map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.7).collect();
        let labels = [1u32, 3, 0];
        let teacher: Vec<f32> = (0..12).map(|i| ((i * 3 % 7) as f32 - 3.0) * 0.9).collect();
        let soft = softmax_t(&teacher, 4, 3.0);
        for (alpha, s) in [(0.0, None), (0.6, Some(soft.as_slice())), (1.0, Some(soft.as_slice()))] {
            let out = distill_loss(&logits, 4, &labels, s, alpha, 3.0);
            for j in 0..12 {
                let h = 1e-2f32;
                let mut p = logits.clone();
                p[j] += h;
                let mut m = logits.clone();
                m[j] -= h;
                let fd = (distill_loss(&p, 4, &labels, s, alpha, 3.0).total - distill_loss(&m, 4, &labels, s, alpha, 3.0).total)
                    / (2.0 * h as f64);
                assert!((fd - out.grad[j] as f64).abs() < 1e-4, "alpha {alpha} j {j}: {fd} vs {}", out.grad[j]);
            }
        }
    }
}
