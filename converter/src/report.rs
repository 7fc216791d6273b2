//! Reports: a terminal table, JSON, and an SVG bar chart of per-layer SQNR.

use std::fmt::Write;

/// Error of one layer's INT8 output against FP32.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerError {
    /// Node name.
    pub name: String,
    /// Op type.
    pub op: String,
    /// Signal-to-quantization-noise ratio in dB (higher is better).
    pub sqnr_db: f64,
}

/// The report of a quantization run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Model name.
    pub model: String,
    /// FP32 top-1 on the validation set (%).
    pub fp32_accuracy: f64,
    /// INT8 top-1 of the emitted file through the runtime (%).
    pub int8_accuracy: f64,
    /// Images where INT8 and FP32 predict the same class (%).
    pub agreement: f64,
    /// Chosen observer.
    pub observer: String,
    /// Every observer tried with its INT8 validation accuracy.
    pub observers_tried: Vec<(String, f64)>,
    /// Calibration images.
    pub calib_samples: usize,
    /// Validation images.
    pub val_samples: usize,
    /// File size in bytes.
    pub size_bytes: usize,
    /// Per-layer error.
    pub layers: Vec<LayerError>,
    /// Layers ranked by the accuracy lost when only they are quantized (worst first).
    pub sensitivity: Vec<crate::quant::sensitivity::Sensitivity>,
    /// Why the gate failed (empty when it passed).
    pub gate_failures: Vec<String>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Escapes `s` for the inside of a JSON string (`<` too, so the text is safe inside SVG/HTML).
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::new();
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '<' => o.push_str("\\u003c"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "null".into()
    }
}

impl Report {
    /// Layers sorted worst first.
    pub fn worst_layers(&self, n: usize) -> Vec<&LayerError> {
        let mut v: Vec<&LayerError> = self.layers.iter().collect();
        v.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
        v.truncate(n);
        v
    }

    /// JSON text.
    pub fn to_json(&self) -> String {
        let mut s = String::from("{\n");
        let _ = writeln!(s, "  \"model\": \"{}\",", esc(&self.model));
        let _ = writeln!(s, "  \"fp32_accuracy\": {},", num(self.fp32_accuracy));
        let _ = writeln!(s, "  \"int8_accuracy\": {},", num(self.int8_accuracy));
        let _ = writeln!(s, "  \"drop_points\": {},", num(self.fp32_accuracy - self.int8_accuracy));
        let _ = writeln!(s, "  \"agreement\": {},", num(self.agreement));
        let _ = writeln!(s, "  \"observer\": \"{}\",", esc(&self.observer));
        let tried: Vec<String> =
            self.observers_tried.iter().map(|(o, a)| format!("{{\"observer\": \"{}\", \"int8_accuracy\": {}}}", esc(o), num(*a))).collect();
        let _ = writeln!(s, "  \"observers_tried\": [{}],", tried.join(", "));
        let _ = writeln!(s, "  \"calibration_samples\": {},", self.calib_samples);
        let _ = writeln!(s, "  \"validation_samples\": {},", self.val_samples);
        let _ = writeln!(s, "  \"size_bytes\": {},", self.size_bytes);
        let layers: Vec<String> = self
            .layers
            .iter()
            .map(|l| format!("    {{\"name\": \"{}\", \"op\": \"{}\", \"sqnr_db\": {}}}", esc(&l.name), esc(&l.op), num(l.sqnr_db)))
            .collect();
        let _ = writeln!(s, "  \"layers\": [\n{}\n  ],", layers.join(",\n"));
        let sens: Vec<String> = self
            .sensitivity
            .iter()
            .map(|l| {
                format!(
                    "    {{\"name\": \"{}\", \"op\": \"{}\", \"accuracy\": {}, \"drop_points\": {}}}",
                    esc(&l.name),
                    esc(&l.op),
                    num(l.accuracy),
                    num(l.drop)
                )
            })
            .collect();
        let _ = writeln!(s, "  \"sensitivity\": [\n{}\n  ],", sens.join(",\n"));
        let fails: Vec<String> = self.gate_failures.iter().map(|f| format!("\"{}\"", esc(f))).collect();
        let _ = writeln!(s, "  \"gate_passed\": {},", self.gate_failures.is_empty());
        let _ = writeln!(s, "  \"gate_failures\": [{}],", fails.join(", "));
        let _ = writeln!(s, "  \"seconds\": {}", num(self.seconds));
        s.push('}');
        s.push('\n');
        s
    }

    /// Human table for the terminal.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "model {}  ({} calibration images, {} validation images)", self.model, self.calib_samples, self.val_samples);
        let _ = writeln!(s, "{:<22} {:>10}", "observer", "INT8 top-1");
        for (o, a) in &self.observers_tried {
            let mark = if *o == self.observer { " <- chosen" } else { "" };
            let _ = writeln!(s, "{o:<22} {a:>9.2}%{mark}");
        }
        let _ = writeln!(s, "{:<28} {:>9.2}%", "FP32 top-1", self.fp32_accuracy);
        let _ = writeln!(
            s,
            "{:<28} {:>9.2}%  ({:+.2} points vs FP32)",
            "INT8 top-1 (emitted file)",
            self.int8_accuracy,
            self.int8_accuracy - self.fp32_accuracy
        );
        let _ = writeln!(s, "{:<28} {:>9.2}%", "top-1 agreement FP32/INT8", self.agreement);
        let _ = writeln!(s, "{:<28} {:>10} bytes", "file size", self.size_bytes);
        let _ = writeln!(s, "per-layer SQNR (dB, INT8 runtime vs FP32):");
        for l in &self.layers {
            let bar = "#".repeat((l.sqnr_db.clamp(0.0, 60.0) / 2.0) as usize);
            let _ = writeln!(s, "  {:<32} {:<16} {:>6.1}  {bar}", l.name, l.op, l.sqnr_db);
        }
        if !self.sensitivity.is_empty() {
            let _ = writeln!(s, "sensitivity (only this layer quantized; top-1 lost, worst first):");
            for l in &self.sensitivity {
                let lost = if l.drop == 0.0 { 0.0 } else { -l.drop };
                let _ = writeln!(s, "  {:<32} {:<16} {:>+6.2} points", l.name, l.op, lost);
            }
        }
        if self.gate_failures.is_empty() {
            let _ = writeln!(s, "accuracy gate: PASSED");
        } else {
            let _ = writeln!(s, "accuracy gate: FAILED");
            for f in &self.gate_failures {
                let _ = writeln!(s, "  - {f}");
            }
            let mut worst: Vec<String> =
                self.sensitivity.iter().take(3).map(|l| format!("{} (-{:.2} points alone)", l.name, l.drop)).collect();
            if worst.is_empty() {
                worst = self.worst_layers(3).iter().map(|l| format!("{} ({:.1} dB)", l.name, l.sqnr_db)).collect();
            }
            let _ = writeln!(s, "  layers that hurt most: {}", worst.join(", "));
        }
        s
    }

    /// SVG bar chart of per-layer SQNR.
    pub fn to_svg(&self) -> String {
        let (bar_h, gap, left, width) = (18.0, 6.0, 220.0, 420.0);
        let max = self.layers.iter().map(|l| l.sqnr_db).fold(10.0f64, f64::max);
        let height = 40.0 + self.layers.len() as f64 * (bar_h + gap);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<text x=\"10\" y=\"18\">per-layer SQNR (dB), {}</text>\n",
            left + width + 60.0,
            xml(&self.model)
        );
        for (i, l) in self.layers.iter().enumerate() {
            let y = 30.0 + i as f64 * (bar_h + gap);
            let w = (l.sqnr_db.max(0.0) / max) * width;
            let color = if l.sqnr_db < 20.0 {
                "#d62728"
            } else if l.sqnr_db < 30.0 {
                "#ff7f0e"
            } else {
                "#2ca02c"
            };
            let _ = writeln!(
                s,
                "<text x=\"10\" y=\"{}\">{}</text><rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bar_h}\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{:.1}</text>",
                y + 13.0,
                xml(&l.name),
                left + w + 5.0,
                y + 13.0,
                l.sqnr_db
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
