//! `temper-run info`: everything the file says about the model, and the kernel path this CPU
//! would use.

use crate::args::{self, Opt};
use crate::common::{self, fmt_dims};
use crate::CliResult;
use std::fmt::Write as _;
use temper_kernels::dispatch;
use temper_kernels::Features;
use temper_runtime::format::{InputKind, Storage};
use temper_runtime::Model;

const HELP: &str = "\
temper-run info: describe a .tmf model

Usage: temper-run info MODEL.tmf [--mmap]

Options:
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
    let p = args::parse("info", argv, &[Opt::flag("mmap")])?;
    if p.help {
        print!("{HELP}");
        return Ok(());
    }
    let path = p.model_path()?;
    let file = common::open_model(path, p.flag("mmap"))?;
    let model = common::view(&file, path)?;
    print!("{}", render(&model, path));
    Ok(())
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

/// The full report.
fn render(model: &Model<'_>, path: &str) -> String {
    let mut o = String::new();
    let (major, minor) = model.version();
    let _ = writeln!(o, "model      {}", if model.name().is_empty() { "(unnamed)" } else { model.name() });
    let _ = writeln!(o, "file       {path} ({} bytes)", model.bytes().len());
    let _ = writeln!(o, "format     temper model file v{major}.{minor}");
    let _ = writeln!(o, "arena      {} bytes", model.arena_size());

    let meta: Vec<(&str, &str)> = model.metadata().collect();
    let _ = writeln!(o, "\nmetadata ({} entries)", meta.len());
    for (k, v) in &meta {
        let _ = writeln!(o, "  {k} = {v}");
    }

    // Ops.
    let mut rows = Vec::new();
    for op in model.ops() {
        let ins: Vec<String> =
            op.inputs.iter().filter(|&&id| model.tensor(id).storage == Storage::Arena).map(|&id| fmt_dims(model.tensor(id).dims)).collect();
        let y = model.tensor(op.outputs[0]);
        rows.push(vec![
            op.index.to_string(),
            op.code.name().to_string(),
            op.name.to_string(),
            ins.join(" + "),
            fmt_dims(y.dims),
            format!("{}", y.scale),
            y.zero_point.to_string(),
            op.scratch_len.to_string(),
        ]);
    }
    let _ = writeln!(o, "\nops ({})", model.op_count());
    o.push_str(&table(&["#", "op", "name", "input shapes", "output shape", "out scale", "out zp", "scratch"], &rows));

    // Tensors.
    let (mut n_const, mut const_bytes, mut n_act, mut act_bytes) = (0usize, 0usize, 0usize, 0usize);
    for id in 0..model.tensor_count() as u32 {
        let t = model.tensor(id);
        match t.storage {
            Storage::Constant => {
                n_const += 1;
                const_bytes += t.len;
            }
            Storage::Arena => {
                n_act += 1;
                act_bytes += t.len;
            }
        }
    }
    let _ = writeln!(o, "\ntensors ({})", model.tensor_count());
    let _ = writeln!(o, "  weights      {n_const} constant tensors, {const_bytes} bytes");
    let _ = writeln!(o, "  activations  {n_act} tensors, {act_bytes} bytes in total, planned into a {} byte arena", model.arena_size());

    // Graph inputs / outputs.
    let _ = writeln!(o, "\ngraph inputs ({})", model.graph_inputs().len());
    for (i, &id) in model.graph_inputs().iter().enumerate() {
        let t = model.tensor(id);
        let _ = writeln!(
            o,
            "  {i}  {}  {} {}{}  scale {} zero point {}",
            tensor_name(model, id),
            t.dtype.name(),
            fmt_dims(t.dims),
            if t.dims.len() == 4 { " (NHWC)" } else { "" },
            t.scale,
            t.zero_point
        );
        match model.input_record(id) {
            Some(r) if r.kind == InputKind::Pixels as u32 => {
                let c = (r.channels as usize).min(4);
                let _ = writeln!(
                    o,
                    "     raw u8 pixels: accepted (NHWC, {c} channels): x = (pixel * {} - mean[c]) / std[c], mean {:?}, std {:?}",
                    r.pixel_scale,
                    &r.mean[..c],
                    &r.std[..c]
                );
            }
            _ => {
                let _ = writeln!(o, "     raw u8 pixels: not accepted (no pixel input record); feed f32 or i8");
            }
        }
    }
    let _ = writeln!(o, "graph outputs ({})", model.graph_outputs().len());
    for (i, &id) in model.graph_outputs().iter().enumerate() {
        let t = model.tensor(id);
        let _ = writeln!(
            o,
            "  {i}  {}  {} {}  scale {} zero point {}",
            tensor_name(model, id),
            t.dtype.name(),
            fmt_dims(t.dims),
            t.scale,
            t.zero_point
        );
    }
    let labels = common::model_labels(model);
    if !labels.is_empty() {
        let _ = writeln!(o, "  class labels ({}): {}", labels.len(), labels.join(", "));
    }

    // Memory plan.
    let _ = writeln!(o, "\nmemory plan (arena {} bytes)", model.arena_size());
    o.push_str(&table(&["offset", "size", "end", "what", "live (op steps)"], &plan_rows(model)));

    // CPU.
    let chosen = dispatch::detect();
    let _ = writeln!(o, "\ncpu");
    let _ = writeln!(o, "  features detected  {}", Features::detect());
    let env = std::env::var("TEMPER_KERNELS").ok();
    let env_note = match env.as_deref() {
        None => String::new(),
        Some(v) if dispatch::Level::parse(v).is_some() => format!(" (capped by TEMPER_KERNELS={v})"),
        Some(v) => format!(" (TEMPER_KERNELS={v} ignored: not one of {})", common::level_names()),
    };
    let _ = writeln!(o, "  kernel path        {}{env_note}", chosen.level);
    let variants: Vec<String> = dispatch::variants()
        .iter()
        .map(|v| if v.kernels().is_some() { format!("{} (ok)", v.name) } else { format!("{} (missing {})", v.name, v.missing()) })
        .collect();
    let _ = writeln!(o, "  compiled variants  {}", variants.join(", "));
    o
}

/// One row per activation and scratch region, by arena offset.
fn plan_rows(model: &Model<'_>) -> Vec<Vec<String>> {
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
    items.into_iter().map(|(off, len, what, live)| vec![off.to_string(), len.to_string(), (off + len).to_string(), what, live]).collect()
}
