//! `temper-run info`: everything the file says about the model, and the kernel path this CPU
//! would use.

use crate::args::{self, Opt};
use crate::common::{self, fmt_dims};
use crate::CliResult;
use serde::Serialize;
use std::fmt::Write as _;
use temper_kernels::dispatch;
use temper_kernels::Features;
use temper_runtime::format::{InputKind, Storage};
use temper_runtime::Model;

const HELP: &str = "\
temper-run info: describe a .tmf model

Usage: temper-run info MODEL.tmf [--json] [--mmap]

Options:
  --json            print the report as one JSON object (the same fields as the text)
  --mmap            map the model (zero copy) instead of reading a private copy; only for
                    files nobody modifies meanwhile (truncating a mapped file gives SIGBUS)

Prints the format version, name, every metadata key/value, file and arena sizes, the op table
(index, op, name, input/output shapes, output scale/zero point, scratch bytes), a tensor
summary (weight and activation bytes), the graph inputs/outputs with their shapes and
quantization and whether an input accepts raw u8 pixels (with its mean/std), the memory plan
(arena offset/size and lifetime of every activation and scratch region), the CPU features
detected and the kernel path chosen (honouring TEMPER_KERNELS).

The model is fully validated (structure and checksums) first; an invalid file is reported
with the loader's message and exit status 1.
";

/// Entry point of `info`.
pub fn main(argv: &[String]) -> CliResult {
    let p = args::parse("info", argv, &[Opt::flag("mmap"), Opt::flag("json")])?;
    if p.help {
        print!("{HELP}");
        return Ok(());
    }
    let path = p.model_path()?;
    let file = common::open_model(path, p.flag("mmap"))?;
    let model = common::view(&file, path)?;
    let info = collect(&model, path);
    if p.flag("json") {
        return common::print_json(&info);
    }
    print!("{}", render(&info));
    Ok(())
}

/// Everything `info` reports (printed as text or, with `--json`, as this structure).
#[derive(Debug, Serialize)]
struct Info {
    model: String,
    name: String,
    file_bytes: usize,
    format_version: String,
    arena_bytes: usize,
    /// Metadata in file order.
    metadata: Vec<MetaEntry>,
    ops: Vec<OpInfo>,
    tensors: TensorSummary,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
    /// Class names from the `labels` metadata (empty without it).
    labels: Vec<String>,
    memory_plan: Vec<PlanRow>,
    cpu: CpuInfo,
}

#[derive(Debug, Serialize)]
struct MetaEntry {
    key: String,
    value: String,
}

#[derive(Debug, Serialize)]
struct OpInfo {
    index: usize,
    op: &'static str,
    name: String,
    /// Shapes of the arena (activation) inputs.
    input_shapes: Vec<Vec<u32>>,
    output_shape: Vec<u32>,
    out_scale: f32,
    out_zero_point: i32,
    scratch_bytes: usize,
}

#[derive(Debug, Serialize)]
struct TensorSummary {
    count: usize,
    weight_tensors: usize,
    weight_bytes: usize,
    activation_tensors: usize,
    activation_bytes: usize,
}

#[derive(Debug, Serialize)]
struct IoInfo {
    index: usize,
    name: String,
    dtype: &'static str,
    dims: Vec<u32>,
    scale: f32,
    zero_point: i32,
    /// The pixel normalization of an input that accepts raw u8 pixels (`null` otherwise and
    /// for outputs).
    pixels: Option<PixelInfo>,
    /// Whether an input accepts raw u8 pixels (absent for outputs).
    #[serde(skip_serializing_if = "Option::is_none")]
    accepts_u8_pixels: Option<bool>,
}

#[derive(Debug, Serialize)]
struct PixelInfo {
    channels: usize,
    pixel_scale: f32,
    mean: Vec<f32>,
    std: Vec<f32>,
}

#[derive(Debug, Serialize)]
struct PlanRow {
    offset: usize,
    size: usize,
    end: usize,
    what: String,
    /// `first..last` op step (`input`/`output` at the graph's ends).
    live: String,
}

#[derive(Debug, Serialize)]
struct CpuInfo {
    features: String,
    kernel_path: &'static str,
    /// `TEMPER_KERNELS` as set (`null` when unset).
    temper_kernels_env: Option<String>,
    variants: Vec<VariantInfo>,
}

#[derive(Debug, Serialize)]
struct VariantInfo {
    name: &'static str,
    available: bool,
    /// CPU features the variant needs and this CPU lacks (empty when available).
    missing: String,
}

/// Gather the report.
fn collect(model: &Model<'_>, path: &str) -> Info {
    let (major, minor) = model.version();
    let ops = model
        .ops()
        .map(|op| {
            let y = model.tensor(op.outputs[0]);
            OpInfo {
                index: op.index,
                op: op.code.name(),
                name: op.name.to_string(),
                input_shapes: op
                    .inputs
                    .iter()
                    .filter(|&&id| model.tensor(id).storage == Storage::Arena)
                    .map(|&id| model.tensor(id).dims.to_vec())
                    .collect(),
                output_shape: y.dims.to_vec(),
                out_scale: y.scale,
                out_zero_point: y.zero_point,
                scratch_bytes: op.scratch_len,
            }
        })
        .collect();
    let mut tensors =
        TensorSummary { count: model.tensor_count(), weight_tensors: 0, weight_bytes: 0, activation_tensors: 0, activation_bytes: 0 };
    for id in 0..model.tensor_count() as u32 {
        let t = model.tensor(id);
        match t.storage {
            Storage::Constant => {
                tensors.weight_tensors += 1;
                tensors.weight_bytes += t.len;
            }
            Storage::Arena => {
                tensors.activation_tensors += 1;
                tensors.activation_bytes += t.len;
            }
        }
    }
    let io = |index: usize, id: u32, input: bool| {
        let t = model.tensor(id);
        let pixels = match model.input_record(id) {
            Some(r) if input && r.kind == InputKind::Pixels as u32 => {
                let c = (r.channels as usize).min(4);
                Some(PixelInfo { channels: c, pixel_scale: r.pixel_scale, mean: r.mean[..c].to_vec(), std: r.std[..c].to_vec() })
            }
            _ => None,
        };
        IoInfo {
            index,
            name: tensor_name(model, id),
            dtype: t.dtype.name(),
            dims: t.dims.to_vec(),
            scale: t.scale,
            zero_point: t.zero_point,
            accepts_u8_pixels: input.then_some(pixels.is_some()),
            pixels,
        }
    };
    let chosen = dispatch::detect();
    Info {
        model: path.to_string(),
        name: model.name().to_string(),
        file_bytes: model.bytes().len(),
        format_version: format!("{major}.{minor}"),
        arena_bytes: model.arena_size(),
        metadata: model.metadata().map(|(k, v)| MetaEntry { key: k.to_string(), value: v.to_string() }).collect(),
        ops,
        tensors,
        inputs: model.graph_inputs().iter().enumerate().map(|(i, &id)| io(i, id, true)).collect(),
        outputs: model.graph_outputs().iter().enumerate().map(|(i, &id)| io(i, id, false)).collect(),
        labels: common::model_labels(model),
        memory_plan: plan_rows(model),
        cpu: CpuInfo {
            features: Features::detect().to_string(),
            kernel_path: chosen.level.name(),
            temper_kernels_env: std::env::var("TEMPER_KERNELS").ok(),
            variants: dispatch::variants()
                .iter()
                .map(|v| VariantInfo {
                    name: v.name,
                    available: v.kernels().is_some(),
                    missing: if v.kernels().is_some() { String::new() } else { v.missing().to_string() },
                })
                .collect(),
        },
    }
}

/// Left-aligned text table with a header row.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let mut s = String::from("  ");
        for (i, c) in cells.enumerate() {
            let pad = w.get(i).copied().unwrap_or(0).saturating_sub(c.chars().count());
            s.push_str(c);
            s.push_str(&" ".repeat(pad + 2));
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied(), &mut out);
    for r in rows {
        line(&mut r.iter().map(String::as_str), &mut out);
    }
    out
}

fn tensor_name(model: &Model<'_>, id: u32) -> String {
    let n = model.tensor(id).name;
    if n.is_empty() {
        format!("#{id}")
    } else {
        n.to_string()
    }
}

/// The report as text.
fn render(info: &Info) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "model      {}", if info.name.is_empty() { "(unnamed)" } else { &info.name });
    let _ = writeln!(o, "file       {} ({} bytes)", info.model, info.file_bytes);
    let _ = writeln!(o, "format     temper model file v{}", info.format_version);
    let _ = writeln!(o, "arena      {} bytes", info.arena_bytes);

    let _ = writeln!(o, "\nmetadata ({} entries)", info.metadata.len());
    for m in &info.metadata {
        let _ = writeln!(o, "  {} = {}", m.key, m.value);
    }

    let rows: Vec<Vec<String>> = info
        .ops
        .iter()
        .map(|op| {
            let ins: Vec<String> = op.input_shapes.iter().map(|d| fmt_dims(d)).collect();
            vec![
                op.index.to_string(),
                op.op.to_string(),
                op.name.clone(),
                ins.join(" + "),
                fmt_dims(&op.output_shape),
                format!("{}", op.out_scale),
                op.out_zero_point.to_string(),
                op.scratch_bytes.to_string(),
            ]
        })
        .collect();
    let _ = writeln!(o, "\nops ({})", info.ops.len());
    o.push_str(&table(&["#", "op", "name", "input shapes", "output shape", "out scale", "out zp", "scratch"], &rows));

    let t = &info.tensors;
    let _ = writeln!(o, "\ntensors ({})", t.count);
    let _ = writeln!(o, "  weights      {} constant tensors, {} bytes", t.weight_tensors, t.weight_bytes);
    let _ = writeln!(
        o,
        "  activations  {} tensors, {} bytes in total, planned into a {} byte arena",
        t.activation_tensors, t.activation_bytes, info.arena_bytes
    );

    let _ = writeln!(o, "\ngraph inputs ({})", info.inputs.len());
    for x in &info.inputs {
        let _ = writeln!(
            o,
            "  {}  {}  {} {}{}  scale {} zero point {}",
            x.index,
            x.name,
            x.dtype,
            fmt_dims(&x.dims),
            if x.dims.len() == 4 { " (NHWC)" } else { "" },
            x.scale,
            x.zero_point
        );
        match &x.pixels {
            Some(px) => {
                let _ = writeln!(
                    o,
                    "     raw u8 pixels: accepted (NHWC, {} channels): x = (pixel * {} - mean[c]) / std[c], mean {:?}, std {:?}",
                    px.channels, px.pixel_scale, px.mean, px.std
                );
            }
            None => {
                let _ = writeln!(o, "     raw u8 pixels: not accepted (no pixel input record); feed f32 or i8");
            }
        }
    }
    let _ = writeln!(o, "graph outputs ({})", info.outputs.len());
    for y in &info.outputs {
        let _ = writeln!(o, "  {}  {}  {} {}  scale {} zero point {}", y.index, y.name, y.dtype, fmt_dims(&y.dims), y.scale, y.zero_point);
    }
    if !info.labels.is_empty() {
        let _ = writeln!(o, "  class labels ({}): {}", info.labels.len(), info.labels.join(", "));
    }

    let _ = writeln!(o, "\nmemory plan (arena {} bytes)", info.arena_bytes);
    let plan: Vec<Vec<String>> = info
        .memory_plan
        .iter()
        .map(|r| vec![r.offset.to_string(), r.size.to_string(), r.end.to_string(), r.what.clone(), r.live.clone()])
        .collect();
    o.push_str(&table(&["offset", "size", "end", "what", "live (op steps)"], &plan));

    let cpu = &info.cpu;
    let _ = writeln!(o, "\ncpu");
    let _ = writeln!(o, "  features detected  {}", cpu.features);
    let env_note = match cpu.temper_kernels_env.as_deref() {
        None => String::new(),
        Some(v) if dispatch::Level::parse(v).is_some() => format!(" (capped by TEMPER_KERNELS={v})"),
        Some(v) => format!(" (TEMPER_KERNELS={v} ignored: not one of {})", common::level_names()),
    };
    let _ = writeln!(o, "  kernel path        {}{env_note}", cpu.kernel_path);
    let variants: Vec<String> = cpu
        .variants
        .iter()
        .map(|v| if v.available { format!("{} (ok)", v.name) } else { format!("{} (missing {})", v.name, v.missing) })
        .collect();
    let _ = writeln!(o, "  compiled variants  {}", variants.join(", "));
    o
}

/// One row per activation and scratch region, by arena offset.
fn plan_rows(model: &Model<'_>) -> Vec<PlanRow> {
    let ins = model.graph_inputs();
    let outs = model.graph_outputs();
    let mut items: Vec<(usize, usize, String, String)> = Vec::new();
    for id in 0..model.tensor_count() as u32 {
        let t = model.tensor(id);
        if t.storage != Storage::Arena {
            continue;
        }
        let producer = model.ops().find(|op| op.outputs.contains(&id)).map(|op| op.index);
        let last_use = model.ops().filter(|op| op.inputs.contains(&id)).map(|op| op.index).last();
        let def = if ins.contains(&id) { "input".to_string() } else { producer.map_or("-".to_string(), |i| i.to_string()) };
        let end = if outs.contains(&id) { "output".to_string() } else { last_use.or(producer).map_or("-".to_string(), |i| i.to_string()) };
        items.push((t.offset, t.len, format!("tensor {}", tensor_name(model, id)), format!("{def}..{end}")));
    }
    for op in model.ops() {
        if op.scratch_len > 0 {
            items.push((
                op.scratch_off,
                op.scratch_len,
                format!("scratch of op {} ({})", op.index, op.name),
                format!("{0}..{0}", op.index),
            ));
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
    items.into_iter().map(|(offset, size, what, live)| PlanRow { offset, size, end: offset + size, what, live }).collect()
}
