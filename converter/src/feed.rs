//! How a dataset's samples feed a model's (first) input, in FP32 and on the device.
//!
//! A [`Dataset`] keeps an NCHW view of its samples and the shape one sample had in its file
//! ([`Dataset::sample_shape`]); the model input may be an image `[N, C, H, W]`, a vector
//! `[N, K]`, a sequence `[N, C, L]` or any other rank. The samples fit when their stored shape
//! equals the input's shape after the batch dimension, ignoring axes of size 1 (so `[N, 28, 28]`
//! IDX images feed a `[N, 1, 28, 28]` input); a vector input `[N, K]` also takes samples of
//! any shape with `K` elements (they are flattened in C order). An input whose leading
//! dimension is fixed above 1 (a matrix input such as `[64, 576]`) takes samples of its whole
//! shape, one per run. Nothing is resized or transposed beyond what the dataset reader did
//! (NHWC files become NCHW there).
//!
//! On the device, the converter stores a 4-D input NHWC and any other rank as it is (see
//! [`crate::quant::lower()`]); [`DeviceInput`] says which, from the emitted file.

use crate::fp32;
use crate::ir::Graph;
use temper_data::Dataset;
use temper_runtime::Model;

fn squeezed(s: &[usize]) -> Vec<usize> {
    s.iter().copied().filter(|&d| d != 1).collect()
}

fn dims(s: &[usize]) -> String {
    let v: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", v.join(", "))
}

/// Check that the samples of `ds` (the `role` set: calibration, validation, test) fit the
/// first input of `g` (see the module docs). The error names the data's source (its files),
/// both shapes and the input.
pub fn check_fit(g: &Graph, ds: &Dataset, role: &str) -> Result<(), String> {
    let input = g.inputs.first().map(|&i| &g.tensors[i]).ok_or("the model has no graph input")?;
    if g.inputs.len() > 1 {
        let names: Vec<&str> = g.inputs.iter().map(|&i| g.tensors[i].name.as_str()).collect();
        return Err(format!(
            "the model has {} inputs ({}); calibration and evaluation data can feed only a single-input model",
            names.len(),
            names.join(", ")
        ));
    }
    let want = if rows(g) > 1 { &input.shape[..] } else { input.shape.get(1..).unwrap_or(&[]) };
    let have = &ds.sample_shape;
    let numel = |s: &[usize]| s.iter().product::<usize>();
    let fits = squeezed(have) == squeezed(want) || (input.shape.len() == 2 && numel(have) == numel(want));
    if fits {
        return Ok(());
    }
    let mut data_shape = vec![ds.len()];
    data_shape.extend_from_slice(have);
    Err(format!(
        "{}: the {role} data has shape {} (one sample {}) but the model input '{}' is {} (one sample {}); \
         no resizing or reshaping is done: give data whose samples are {}",
        ds.source,
        dims(&data_shape),
        dims(have),
        input.name,
        dims(&input.shape),
        dims(want),
        dims(want)
    ))
}

/// Leading-dimension rows of the first input one sample fills: 1, or the input's fixed leading
/// dimension when that is above 1 (see the module docs).
pub fn rows(g: &Graph) -> usize {
    g.inputs.first().and_then(|&i| g.tensors[i].shape.first().copied()).unwrap_or(1).max(1)
}

/// The FP32 input tensor of a batch of `n` samples (`data` in the dataset's element order,
/// which is the model input's, see [`check_fit`]).
pub fn batch_tensor(g: &Graph, n: usize, data: Vec<f32>) -> Result<fp32::Tensor, fp32::Fp32Error> {
    fp32::Tensor::new(g.input_shape_for(n * rows(g)), data)
}

/// How the emitted file stores graph input 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceInput {
    /// A 4-D input stored NHWC: one sample of the dataset (CHW order) must be transposed.
    Nhwc {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// Any other rank: the sample's elements in their own order.
    Plain,
}

impl DeviceInput {
    /// The layout of `model`'s graph input 0.
    pub fn of(model: &Model<'_>) -> DeviceInput {
        let Some(&id) = model.graph_inputs().first() else { return DeviceInput::Plain };
        match *model.tensor(id).dims {
            [_, h, w, c] => DeviceInput::Nhwc { c: c as usize, h: h as usize, w: w as usize },
            _ => DeviceInput::Plain,
        }
    }

    /// Write one sample `src` (dataset order) into `dst` in the device's order.
    pub fn arrange<T: Copy>(self, src: &[T], dst: &mut [T]) {
        match self {
            DeviceInput::Nhwc { c, h, w } if src.len() == c * h * w => crate::eval::nchw_to_nhwc(src, dst, c, h, w),
            _ => dst.copy_from_slice(src),
        }
    }
}
