//! A uniform, labeled, in-memory dataset and the loaders that build it.
//!
//! # Pixels: `u8` or `f32`
//!
//! Camera frames and image files are `u8`; the model's input normalization is
//! *not* applied at load time (on device it is folded into the first
//! quantization step), so such datasets keep [`Pixels::U8`] and are
//! normalized per batch with a [`Normalize`]. NPY/NPZ/IDX files may instead
//! hold `f32` data; those are kept as [`Pixels::F32`] and are taken to be
//! **already in the model's input domain**: [`Dataset::batches`] passes them
//! through unchanged, whatever [`Normalize`] is given.
//!
//! # Spec strings ([`load_dataset`])
//!
//! | spec | meaning |
//! |------|---------|
//! | `fashion-mnist:test` | the 10 000 t10k images |
//! | `fashion-mnist:train` | the first 55 000 train images |
//! | `fashion-mnist:val` | the last 5 000 train images |
//! | `idx:IMAGES,LABELS` | two IDX files (gzip'd or not) |
//! | `npy:IMAGES.npy,LABELS.npy` | two NPY files |
//! | `npz:FILE.npz` | keys `x` or `images`, and `y` or `labels` |
//! | `dir:PATH` or a directory path | an image folder (see [`crate::images`]) |
//! | `FILE.npz` | same as `npz:FILE.npz` |
//!
//! Fashion-MNIST is read from `/usr/share/datasets/fashion-mnist` (Debian
//! package `dataset-fashion-mnist`) or from the directory in the environment
//! variable `TEMPER_FMNIST_DIR`.
//!
//! Any spec may end in `:N` (at most the first `N` samples; fewer if the set is
//! smaller) or `:A..B` (samples `A` to `B`-1, which must exist), e.g.
//! `fashion-mnist:test:1000`. Paths may not contain `,`.
//!
//! # Shapes
//!
//! Arrays of any rank ≥ 1 are read; the leading dimension counts the samples.
//! Everything is stored with an NCHW view [`Dataset::shape`]: IDX/NPY arrays of
//! shape `[N, H, W]` get `C = 1`, `[N, D]` becomes `[N, 1, 1, D]`, `[N]` becomes
//! `[N, 1, 1, 1]`, arrays of rank 5 or more become `[N, 1, 1, D]` with `D` the
//! product of the sample dimensions, and 4-d arrays are NCHW, except that with
//! [`Layout::Auto`] a 4-d array whose last dimension is 1, 3 or 4 while its
//! second is not is read as NHWC and transposed. The shape of one sample as
//! stored (after that transposition) is kept in [`Dataset::sample_shape`]
//! (`[D]`, `[C, L]`, `[H, W]`, `[C, H, W]`, …): the element order is the same as
//! the NCHW view's, so vectors `[N, K]` and sequences `[N, C, L]` feed models
//! with such inputs unchanged. Labels must be an integer array of shape `[N]`
//! or `[N, 1]`.
//!
//! # Validation
//!
//! Every loader checks: at least one sample; as many labels as images; no
//! negative label; every label `< num_classes` (the error names the labels
//! file and the sample index). `num_classes` comes from
//! [`LoadOptions::num_classes`], else the dataset itself (10 for
//! Fashion-MNIST, the folder count for image folders, `max label + 1`
//! otherwise).

use std::path::{Path, PathBuf};

use crate::error::{DataError, ErrorKind};
use crate::idx::{read_idx_any, IdxData, IdxTensor};
use crate::images::{self, ColorMode, FolderOptions};
use crate::npy::{read_npy, read_npz, NpyArray, NpyData};

/// Default Fashion-MNIST directory (Debian package `dataset-fashion-mnist`).
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Environment variable overriding [`FASHION_MNIST_DIR`].
pub const FASHION_MNIST_ENV: &str = "TEMPER_FMNIST_DIR";

/// Fashion-MNIST class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// Number of training images held out as the validation split.
pub const FASHION_MNIST_VAL: usize = 5000;

/// Pixel storage of a [`Dataset`], NCHW.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// Raw 8-bit pixels (not normalized).
    U8(Vec<u8>),
    /// Float pixels, assumed already normalized for the model.
    F32(Vec<f32>),
}

impl Pixels {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }

    /// True if there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw bytes, if this is `U8`.
    pub fn as_u8(&self) -> Option<&[u8]> {
        match self {
            Pixels::U8(v) => Some(v),
            Pixels::F32(_) => None,
        }
    }

    /// The floats, if this is `F32`.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Pixels::F32(v) => Some(v),
            Pixels::U8(_) => None,
        }
    }

    fn slice(&self, start: usize, end: usize) -> Pixels {
        match self {
            Pixels::U8(v) => Pixels::U8(v[start..end].to_vec()),
            Pixels::F32(v) => Pixels::F32(v[start..end].to_vec()),
        }
    }
}

/// Per-channel input normalization: `y = (x * scale - mean[c]) / std[c]`.
///
/// `mean` and `std` hold one value per channel, or a single value used for
/// every channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    /// Per-channel mean, subtracted after scaling.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, divided by last.
    pub std: Vec<f32>,
    /// Applied to the raw value first; usually `1/255`.
    pub scale: f32,
}

impl Default for Normalize {
    /// [`Normalize::unit`].
    fn default() -> Self {
        Normalize::unit()
    }
}

impl Normalize {
    /// Builds a normalization.
    pub fn new(mean: Vec<f32>, std: Vec<f32>, scale: f32) -> Self {
        Normalize { mean, std, scale }
    }

    /// `x / 255` (range 0..=1).
    pub fn unit() -> Self {
        Normalize::new(vec![0.0], vec![1.0], 1.0 / 255.0)
    }

    /// No change: `y = x` (values stay 0..=255).
    pub fn identity() -> Self {
        Normalize::new(vec![0.0], vec![1.0], 1.0)
    }

    /// Fashion-MNIST's statistics on `x / 255` (mean 0.2860, std 0.3530): the demo's.
    pub fn fashion_mnist() -> Self {
        Normalize::new(vec![0.2860], vec![0.3530], 1.0 / 255.0)
    }

    /// The normalization a data `spec` (see [`load_dataset`]) gets when the user gives none:
    /// [`Normalize::fashion_mnist`] for the demo's `fashion-mnist:*` specs,
    /// [`Normalize::unit`] (`x / 255`, no mean or std) for anything else. Only `u8` data is
    /// ever normalized; `f32` data is taken as given.
    pub fn default_for(spec: &str) -> Self {
        if spec.starts_with("fashion-mnist:") {
            Normalize::fashion_mnist()
        } else {
            Normalize::unit()
        }
    }

    /// ImageNet statistics on `x / 255`, RGB order.
    pub fn imagenet() -> Self {
        Normalize::new(vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225], 1.0 / 255.0)
    }

    fn mean_of(&self, c: usize) -> f32 {
        self.mean.get(c).or(self.mean.first()).copied().unwrap_or(0.0)
    }

    fn std_of(&self, c: usize) -> f32 {
        self.std.get(c).or(self.std.first()).copied().unwrap_or(1.0)
    }

    /// Normalizes one raw value of channel `channel`. Channels beyond the
    /// given statistics use the first entry (so single-value statistics
    /// broadcast); call [`Normalize::validate`] to reject mismatches.
    pub fn apply(&self, value: u8, channel: usize) -> f32 {
        (f32::from(value) * self.scale - self.mean_of(channel)) / self.std_of(channel)
    }

    /// The 256 normalized values of `channel`, for table lookup.
    pub fn lut(&self, channel: usize) -> [f32; 256] {
        let mut t = [0f32; 256];
        for (v, slot) in t.iter_mut().enumerate() {
            *slot = self.apply(v as u8, channel);
        }
        t
    }

    /// Checks that `mean`/`std` have 1 or `channels` entries, that every
    /// value is finite and that no `std` is zero.
    pub fn validate(&self, channels: usize) -> Result<(), DataError> {
        let label = "<normalize>";
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if !(v.len() == 1 || v.len() == channels) {
                return Err(DataError::shape(label, format!("{name} has {} values; need 1 or {channels} (one per channel)", v.len())));
            }
        }
        if !self.scale.is_finite() || self.mean.iter().chain(&self.std).any(|x| !x.is_finite()) {
            return Err(DataError::spec(label, "mean, std and scale must be finite"));
        }
        if self.std.contains(&0.0) {
            return Err(DataError::spec(label, "std must not be zero"));
        }
        Ok(())
    }
}

/// A labeled image dataset held in memory, NCHW.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Pixel values, `shape[0] * shape[1] * shape[2] * shape[3]` of them.
    pub images: Pixels,
    /// `[N, C, H, W]` (the NCHW view of the samples, see the module docs).
    pub shape: [usize; 4],
    /// The shape of one sample as stored in the source (e.g. `[1024]` for `[N, 1024]` data,
    /// `[3, 128]` for `[N, 3, 128]`, `[28, 28]` for IDX images); same elements, in the same
    /// order, as `shape[1..]`.
    pub sample_shape: Vec<usize>,
    /// One label per image, each `< num_classes`.
    pub labels: Vec<u32>,
    /// Number of classes.
    pub num_classes: usize,
    /// Class names by label, when known (else empty).
    pub class_names: Vec<String>,
    /// Where the data came from (a spec or path), used in error messages.
    pub source: String,
}

/// Image array layout for 4-d NPY/IDX inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// NCHW unless the array looks NHWC (see the module docs).
    #[default]
    Auto,
    /// `[N, C, H, W]`.
    Nchw,
    /// `[N, H, W, C]` (transposed to NCHW on load).
    Nhwc,
}

/// Options for [`load_dataset_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// Resize every image to `(height, width)` (`u8` data only).
    pub size: Option<(usize, usize)>,
    /// Convert to this channel layout (`u8` data with 1 or 3 channels only).
    /// For image folders `None` means RGB if any image has color, else gray;
    /// for other sources it means "keep as stored".
    pub color: Option<ColorMode>,
    /// Number of classes; labels are checked against it.
    pub num_classes: Option<usize>,
    /// Layout of 4-d arrays.
    pub layout: Layout,
}

/// Checks labels against `num_classes`; `label` names the labels file.
pub fn check_labels(labels: &[u32], num_classes: usize, label: &str) -> Result<(), DataError> {
    if let Some(i) = labels.iter().position(|&l| l as usize >= num_classes) {
        return Err(DataError::new(
            label,
            ErrorKind::LabelOutOfRange { index: i, label: i64::from(labels[i]), num_classes: num_classes as u64 },
        ));
    }
    Ok(())
}

impl Dataset {
    /// Builds and [validates](Dataset::validate) a dataset.
    pub fn new(
        images: Pixels,
        shape: [usize; 4],
        labels: Vec<u32>,
        num_classes: usize,
        source: impl Into<String>,
    ) -> Result<Self, DataError> {
        let d = Dataset {
            images,
            shape,
            sample_shape: shape[1..].to_vec(),
            labels,
            num_classes,
            class_names: Vec::new(),
            source: source.into(),
        };
        d.validate()?;
        Ok(d)
    }

    /// Checks the invariants: non-empty, pixel count matches `shape`, one
    /// label per image, labels `< num_classes`, and `class_names` empty or
    /// `num_classes` long.
    pub fn validate(&self) -> Result<(), DataError> {
        let src = self.source.as_str();
        let [n, c, h, w] = self.shape;
        if n == 0 {
            return Err(DataError::new(src, ErrorKind::Empty("no images".into())));
        }
        let want = n.checked_mul(c).and_then(|x| x.checked_mul(h)).and_then(|x| x.checked_mul(w));
        if want != Some(self.images.len()) {
            return Err(DataError::shape(src, format!("shape {:?} does not match {} pixel values", self.shape, self.images.len())));
        }
        if c == 0 || h == 0 || w == 0 {
            return Err(DataError::shape(src, format!("shape {:?} has a zero dimension", self.shape)));
        }
        if self.sample_shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(c * h * w) {
            return Err(DataError::shape(
                src,
                format!("sample shape {:?} does not have the {} elements of shape {:?}", self.sample_shape, c * h * w, self.shape),
            ));
        }
        if self.labels.len() != n {
            return Err(DataError::shape(src, format!("{n} images but {} labels", self.labels.len())));
        }
        check_labels(&self.labels, self.num_classes, src)?;
        if !self.class_names.is_empty() && self.class_names.len() != self.num_classes {
            return Err(DataError::shape(src, format!("{} class names for {} classes", self.class_names.len(), self.num_classes)));
        }
        Ok(())
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// True if there are no images (a validated dataset never is).
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// Values per image (`C * H * W`; saturating, so an inconsistent shape
    /// cannot overflow).
    pub fn image_len(&self) -> usize {
        self.shape[1].saturating_mul(self.shape[2]).saturating_mul(self.shape[3])
    }

    /// Cheap structural check (pixel and label counts match `shape`) guarding
    /// the methods below against hand-built inconsistent datasets (the fields
    /// are public).
    fn consistent(&self) -> Result<(), DataError> {
        let want = self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if want != Some(self.images.len()) || self.labels.len() != self.shape[0] {
            return Err(DataError::shape(
                self.source.as_str(),
                format!("inconsistent dataset: shape {:?}, {} pixel values, {} labels", self.shape, self.images.len(), self.labels.len()),
            ));
        }
        Ok(())
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.shape[1]
    }

    /// Height.
    pub fn height(&self) -> usize {
        self.shape[2]
    }

    /// Width.
    pub fn width(&self) -> usize {
        self.shape[3]
    }

    /// Images `start .. start + len` as a new dataset (copied).
    ///
    /// Errors if the range is empty or reaches past the end.
    pub fn subset(&self, start: usize, len: usize) -> Result<Dataset, DataError> {
        self.consistent()?;
        let end = start.checked_add(len).filter(|&e| e <= self.len());
        let Some(end) = end else {
            return Err(DataError::spec(
                self.source.as_str(),
                format!("subset {start}..{} is out of range (dataset has {} images)", start.saturating_add(len), self.len()),
            ));
        };
        if len == 0 {
            return Err(DataError::new(self.source.as_str(), ErrorKind::Empty(format!("subset {start}..{end} is empty"))));
        }
        let il = self.image_len();
        Ok(Dataset {
            images: self.images.slice(start * il, end * il),
            shape: [len, self.shape[1], self.shape[2], self.shape[3]],
            sample_shape: self.sample_shape.clone(),
            labels: self.labels[start..end].to_vec(),
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
            source: format!("{}[{start}..{end}]", self.source),
        })
    }

    /// The first `min(n, len)` images (an error only if `n` is 0).
    pub fn take(&self, n: usize) -> Result<Dataset, DataError> {
        self.subset(0, n.min(self.len()))
    }

    /// Raw bytes of image `i` (CHW), if the pixels are `u8` and `i` exists.
    pub fn image_u8(&self, i: usize) -> Option<&[u8]> {
        let il = self.image_len();
        self.images.as_u8()?.get(i.checked_mul(il)?..i.checked_add(1)?.checked_mul(il)?)
    }

    /// Writes image `i` as normalized `f32` (CHW) into `out`, which must hold
    /// [`image_len`](Dataset::image_len) values. `F32` pixels are copied
    /// unchanged. Returns `false` if `i` or `out` is out of range.
    pub fn image_f32_into(&self, i: usize, norm: &Normalize, out: &mut [f32]) -> bool {
        let il = self.image_len();
        if out.len() != il || i >= self.len() || self.consistent().is_err() {
            return false;
        }
        match &self.images {
            Pixels::F32(v) => out.copy_from_slice(&v[i * il..(i + 1) * il]),
            Pixels::U8(v) => {
                let plane = self.shape[2] * self.shape[3];
                let src = &v[i * il..(i + 1) * il];
                for c in 0..self.shape[1] {
                    let lut = norm.lut(c);
                    for (o, &x) in out[c * plane..(c + 1) * plane].iter_mut().zip(&src[c * plane..(c + 1) * plane]) {
                        *o = lut[x as usize];
                    }
                }
            }
        }
        true
    }

    /// Iterates over batches of at most `batch_size` images (a `batch_size`
    /// of 0 is treated as 1), with pixels normalized by `norm` (`U8` data) or
    /// copied (`F32` data). The last batch may be smaller.
    pub fn batches<'a>(&'a self, batch_size: usize, norm: &Normalize) -> Batches<'a> {
        let c = self.shape[1];
        Batches { ds: self, batch_size: batch_size.max(1), next: 0, luts: (0..c).map(|ch| norm.lut(ch)).collect() }
    }

    /// Iterates over batches of raw `u8` pixels and labels without copying;
    /// `None` for `F32` data.
    pub fn u8_batches(&self, batch_size: usize) -> Option<impl Iterator<Item = (&[u8], &[u32])> + '_> {
        self.consistent().ok()?;
        let bs = batch_size.max(1);
        let px = self.images.as_u8()?;
        Some(px.chunks(bs.saturating_mul(self.image_len().max(1))).zip(self.labels.chunks(bs)))
    }

    /// All pixels as normalized `f32` (see [`Dataset::batches`] for `F32`
    /// data).
    pub fn to_f32(&self, norm: &Normalize) -> Vec<f32> {
        if self.consistent().is_err() {
            return Vec::new();
        }
        let mut out = vec![0f32; self.images.len()];
        let il = self.image_len();
        if il > 0 {
            for (i, chunk) in out.chunks_exact_mut(il).enumerate() {
                self.image_f32_into(i, norm, chunk);
            }
        }
        out
    }

    /// Resizes every image to `height` x `width` (bilinear, see
    /// [`crate::images`]); `u8` pixels only.
    pub fn resize(&self, height: usize, width: usize) -> Result<Dataset, DataError> {
        self.consistent()?;
        let Pixels::U8(px) = &self.images else {
            return Err(DataError::new(
                self.source.as_str(),
                ErrorKind::UnsupportedDtype("resizing needs u8 pixels; this dataset holds f32".into()),
            ));
        };
        if (height, width) == (self.height(), self.width()) {
            return Ok(self.clone());
        }
        let [n, c, h, w] = self.shape;
        let il = self.image_len();
        let per_image = c.checked_mul(height).and_then(|x| x.checked_mul(width));
        if per_image.is_none_or(|x| x > images::MAX_IMAGE_BYTES) {
            return Err(DataError::shape(self.source.as_str(), format!("target size {c}x{height}x{width} is too large")));
        }
        let total = [c, height, width]
            .iter()
            .try_fold(n, |a, &d| a.checked_mul(d))
            .ok_or_else(|| DataError::shape(self.source.as_str(), format!("resized dataset {n}x{c}x{height}x{width} is too large")))?;
        let mut out = Vec::with_capacity(total);
        for i in 0..n {
            let r = images::resize_bilinear_chw(&px[i * il..(i + 1) * il], c, h, w, height, width)
                .map_err(|e| DataError { source_name: self.source.clone(), ..e })?;
            out.extend_from_slice(&r);
        }
        Ok(Dataset { images: Pixels::U8(out), shape: [n, c, height, width], sample_shape: vec![c, height, width], ..self.clone_meta() })
    }

    /// Converts every image to `mode` (1 → 3 channels replicates gray, 3 → 1
    /// takes luma, RGB ↔ BGR swaps); `u8` pixels with 1 or 3 channels only.
    ///
    /// 3-channel data is taken to be RGB.
    pub fn convert_color(&self, mode: ColorMode) -> Result<Dataset, DataError> {
        self.consistent()?;
        let Pixels::U8(px) = &self.images else {
            return Err(DataError::new(
                self.source.as_str(),
                ErrorKind::UnsupportedDtype("color conversion needs u8 pixels; this dataset holds f32".into()),
            ));
        };
        let [n, c, h, w] = self.shape;
        if !(c == 1 || c == 3) {
            return Err(DataError::shape(self.source.as_str(), format!("color conversion needs 1 or 3 channels, not {c}")));
        }
        if c == 1 && mode == ColorMode::Gray || c == 3 && mode == ColorMode::Rgb {
            return Ok(self.clone());
        }
        let il = self.image_len();
        let plane = h * w;
        let oc = mode.channels();
        let mut out = Vec::with_capacity(n * oc * plane);
        for i in 0..n {
            let img = &px[i * il..(i + 1) * il];
            match (c, mode) {
                (1, _) => (0..3).for_each(|_| out.extend_from_slice(img)),
                (_, ColorMode::Gray) => out.extend((0..plane).map(|p| images::luma(img[p], img[plane + p], img[2 * plane + p]))),
                _ => {
                    out.extend_from_slice(&img[2 * plane..]);
                    out.extend_from_slice(&img[plane..2 * plane]);
                    out.extend_from_slice(&img[..plane]);
                }
            }
        }
        Ok(Dataset { images: Pixels::U8(out), shape: [n, oc, h, w], sample_shape: vec![oc, h, w], ..self.clone_meta() })
    }

    fn clone_meta(&self) -> Dataset {
        Dataset {
            images: Pixels::U8(Vec::new()),
            shape: self.shape,
            sample_shape: self.sample_shape.clone(),
            labels: self.labels.clone(),
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
            source: self.source.clone(),
        }
    }

    /// Number of images per label (`num_classes` entries).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut v = vec![0usize; self.num_classes];
        for &l in &self.labels {
            if let Some(x) = v.get_mut(l as usize) {
                *x += 1;
            }
        }
        v
    }
}

/// One batch produced by [`Batches`].
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<'a> {
    /// Index of the first image of the batch in the dataset.
    pub start: usize,
    /// `[n, C, H, W]` with `n` the images in this batch.
    pub shape: [usize; 4],
    /// Normalized pixels, NCHW.
    pub pixels: Vec<f32>,
    /// Labels of the batch.
    pub labels: &'a [u32],
}

/// Iterator over normalized batches, from [`Dataset::batches`].
///
/// Each `next()` allocates one `Vec<f32>` for its batch; use
/// [`Batches::next_into`] to reuse a buffer instead.
#[derive(Debug)]
pub struct Batches<'a> {
    ds: &'a Dataset,
    batch_size: usize,
    next: usize,
    luts: Vec<[f32; 256]>,
}

impl<'a> Batches<'a> {
    /// Fills `buf` (resized as needed) with the next batch's pixels and
    /// returns its start index, shape and labels; `None` when done.
    pub fn next_into(&mut self, buf: &mut Vec<f32>) -> Option<(usize, [usize; 4], &'a [u32])> {
        let ds = self.ds;
        let start = self.next;
        if start >= ds.len() || ds.consistent().is_err() {
            return None;
        }
        let n = self.batch_size.min(ds.len() - start);
        self.next = start + n;
        let il = ds.image_len();
        let [_, c, h, w] = ds.shape;
        let plane = h * w;
        buf.clear();
        match &ds.images {
            Pixels::F32(v) => buf.extend_from_slice(&v[start * il..(start + n) * il]),
            Pixels::U8(v) => {
                buf.reserve(n * il);
                for img in v[start * il..(start + n) * il].chunks_exact(il.max(1)) {
                    for (ch, lut) in self.luts.iter().enumerate().take(c) {
                        buf.extend(img[ch * plane..(ch + 1) * plane].iter().map(|&x| lut[x as usize]));
                    }
                }
            }
        }
        Some((start, [n, c, h, w], &ds.labels[start..start + n]))
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Batch<'a>;

    fn next(&mut self) -> Option<Batch<'a>> {
        let mut pixels = Vec::new();
        let (start, shape, labels) = self.next_into(&mut pixels)?;
        Some(Batch { start, shape, pixels, labels })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.ds.len().saturating_sub(self.next).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Fashion-MNIST split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FmnistSplit {
    /// First 55 000 training images.
    Train,
    /// Last 5 000 training images.
    Val,
    /// The 10 000 test images.
    Test,
}

/// The Fashion-MNIST directory: `$TEMPER_FMNIST_DIR` or [`FASHION_MNIST_DIR`].
pub fn fashion_mnist_dir() -> PathBuf {
    std::env::var_os(FASHION_MNIST_ENV).filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(FASHION_MNIST_DIR))
}

/// Loads a Fashion-MNIST split from [`fashion_mnist_dir`].
pub fn load_fashion_mnist(split: FmnistSplit) -> Result<Dataset, DataError> {
    let dir = fashion_mnist_dir();
    let prefix = if split == FmnistSplit::Test { "t10k" } else { "train" };
    let ip = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let lp = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    for p in [&ip, &lp] {
        if !p.is_file() {
            return Err(DataError::spec(
                p.display().to_string(),
                format!(
                    "Fashion-MNIST file not found (apt-get install dataset-fashion-mnist, or set {FASHION_MNIST_ENV} to a directory holding {{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte.gz)"
                ),
            ));
        }
    }
    let opts = LoadOptions { num_classes: Some(10), ..LoadOptions::default() };
    let mut ds = load_idx(&ip, &lp, &opts)?;
    ds.class_names = FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect();
    let name = match split {
        FmnistSplit::Train => "fashion-mnist:train",
        FmnistSplit::Val => "fashion-mnist:val",
        FmnistSplit::Test => "fashion-mnist:test",
    };
    let n = ds.len();
    let mut out = match split {
        FmnistSplit::Test => ds,
        FmnistSplit::Train | FmnistSplit::Val => {
            if n <= FASHION_MNIST_VAL {
                return Err(DataError::shape(
                    ip.display().to_string(),
                    format!("training set has only {n} images; need more than {FASHION_MNIST_VAL} to split off validation"),
                ));
            }
            if split == FmnistSplit::Train {
                ds.subset(0, n - FASHION_MNIST_VAL)?
            } else {
                ds.subset(n - FASHION_MNIST_VAL, FASHION_MNIST_VAL)?
            }
        }
    };
    out.source = name.to_string();
    Ok(out)
}

/// Pixels, their NCHW view and the stored shape of one sample.
type Samples = (Pixels, [usize; 4], Vec<usize>);

fn idx_images(t: IdxTensor, src: &str, layout: Layout) -> Result<Samples, DataError> {
    let px = match t.data {
        IdxData::U8(v) => Pixels::U8(v),
        IdxData::F32(v) => Pixels::F32(v),
        IdxData::F64(_) => Pixels::F32(t.data.to_f32()),
        other => return Err(DataError::new(src, ErrorKind::UnsupportedDtype(format!("{:?} images (need u8, f32 or f64)", other.dtype())))),
    };
    to_nchw(px, &t.dims, src, layout)
}

fn to_nchw(px: Pixels, dims: &[usize], src: &str, layout: Layout) -> Result<Samples, DataError> {
    let sample = dims.get(1..).unwrap_or(&[]).to_vec();
    let shape = match *dims {
        [n] => [n, 1, 1, 1],
        [n, d] => [n, 1, 1, d],
        [n, h, w] => [n, 1, h, w],
        [n, a, b, c] => {
            let nhwc = match layout {
                Layout::Nchw => false,
                Layout::Nhwc => true,
                Layout::Auto => matches!(c, 1 | 3 | 4) && !matches!(a, 1 | 3 | 4),
            };
            if nhwc {
                return Ok((transpose_nhwc(px, [n, a, b, c]), [n, c, a, b], vec![c, a, b]));
            }
            [n, a, b, c]
        }
        [n, ref rest @ ..] => {
            let d = rest.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            [n, 1, 1, d.ok_or_else(|| DataError::shape(src, format!("shape {dims:?} is too large")))?]
        }
        [] => return Err(DataError::shape(src, "a 0-d array holds no samples (need a leading sample dimension)")),
    };
    Ok((px, shape, sample))
}

fn transpose_nhwc(px: Pixels, [n, h, w, c]: [usize; 4]) -> Pixels {
    fn t<T: Copy + Default>(v: &[T], n: usize, h: usize, w: usize, c: usize) -> Vec<T> {
        let mut out = vec![T::default(); v.len()];
        let plane = h * w;
        for i in 0..n {
            let base = i * plane * c;
            for p in 0..plane {
                for ch in 0..c {
                    out[base + ch * plane + p] = v[base + p * c + ch];
                }
            }
        }
        out
    }
    match px {
        Pixels::U8(v) => Pixels::U8(t(&v, n, h, w, c)),
        Pixels::F32(v) => Pixels::F32(t(&v, n, h, w, c)),
    }
}

/// Converts integer label values to `u32`, rejecting negatives and values
/// beyond `u32`.
fn labels_from_i64(vals: impl Iterator<Item = i64>, src: &str) -> Result<Vec<u32>, DataError> {
    let mut out = Vec::with_capacity(vals.size_hint().0);
    for (i, v) in vals.enumerate() {
        let l = u32::try_from(v)
            .map_err(|_| DataError::new(src, ErrorKind::LabelOutOfRange { index: i, label: v, num_classes: u64::from(u32::MAX) }))?;
        out.push(l);
    }
    Ok(out)
}

fn check_label_dims(dims: &[usize], src: &str) -> Result<(), DataError> {
    match dims {
        [_] | [_, 1] => Ok(()),
        _ => Err(DataError::shape(src, format!("labels must have shape [N] or [N, 1], got {dims:?}"))),
    }
}

fn idx_labels(t: IdxTensor, src: &str) -> Result<Vec<u32>, DataError> {
    check_label_dims(&t.dims, src)?;
    match t.data {
        IdxData::U8(v) => Ok(v.into_iter().map(u32::from).collect()),
        IdxData::I8(v) => labels_from_i64(v.into_iter().map(i64::from), src),
        IdxData::I16(v) => labels_from_i64(v.into_iter().map(i64::from), src),
        IdxData::I32(v) => labels_from_i64(v.into_iter().map(i64::from), src),
        other => Err(DataError::new(src, ErrorKind::UnsupportedDtype(format!("{:?} labels (need an integer type)", other.dtype())))),
    }
}

fn npy_images(a: NpyArray, src: &str, layout: Layout) -> Result<Samples, DataError> {
    let px = match a.data {
        NpyData::U8(v) => Pixels::U8(v),
        NpyData::F32(v) => Pixels::F32(v),
        other => return Err(DataError::new(src, ErrorKind::UnsupportedDtype(format!("{} images (need |u1, <f4 or <f8)", other.descr())))),
    };
    to_nchw(px, &a.shape, src, layout)
}

fn npy_labels(a: NpyArray, src: &str) -> Result<Vec<u32>, DataError> {
    check_label_dims(&a.shape, src)?;
    match a.data.to_i64() {
        Some(v) => labels_from_i64(v.into_iter(), src),
        None => Err(DataError::new(src, ErrorKind::UnsupportedDtype(format!("{} labels (need an integer dtype)", a.data.descr())))),
    }
}

/// Assembles, checks and post-processes a dataset. `labels_src` names the
/// labels file in label errors.
fn finish(
    (px, shape, sample_shape): Samples,
    labels: Vec<u32>,
    [images_src, labels_src]: [&str; 2],
    source: String,
    opts: &LoadOptions,
    default_classes: Option<usize>,
) -> Result<Dataset, DataError> {
    if shape[0] == 0 {
        return Err(DataError::new(images_src, ErrorKind::Empty("no images".into())));
    }
    if labels.len() != shape[0] {
        return Err(DataError::shape(labels_src, format!("{} labels for {} images in {images_src}", labels.len(), shape[0])));
    }
    let num_classes = match opts.num_classes.or(default_classes) {
        Some(k) => k,
        None => labels.iter().max().map_or(0, |&m| m as usize + 1),
    };
    check_labels(&labels, num_classes, labels_src)?;
    let mut ds = Dataset { images: px, shape, sample_shape, labels, num_classes, class_names: Vec::new(), source };
    ds.validate()?;
    if let Some(mode) = opts.color {
        ds = ds.convert_color(mode)?;
    }
    if let Some((h, w)) = opts.size {
        ds = ds.resize(h, w)?;
    }
    Ok(ds)
}

/// Loads images and labels from two IDX files.
pub fn load_idx(images: &Path, labels: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let is = images.display().to_string();
    let ls = labels.display().to_string();
    let samples = idx_images(read_idx_any(images)?, &is, opts.layout)?;
    let l = idx_labels(read_idx_any(labels)?, &ls)?;
    finish(samples, l, [&is, &ls], format!("idx:{is},{ls}"), opts, None)
}

/// Loads images and labels from two NPY files.
pub fn load_npy(images: &Path, labels: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let is = images.display().to_string();
    let ls = labels.display().to_string();
    let samples = npy_images(read_npy(images)?, &is, opts.layout)?;
    let l = npy_labels(read_npy(labels)?, &ls)?;
    finish(samples, l, [&is, &ls], format!("npy:{is},{ls}"), opts, None)
}

/// Loads an NPZ file with keys `x` or `images`, and `y` or `labels`.
pub fn load_npz(path: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let ps = path.display().to_string();
    let mut members = read_npz(path)?;
    let keys: Vec<String> = members.iter().map(|(k, _)| k.clone()).collect();
    let mut take = |names: [&str; 2]| members.iter().position(|(k, _)| names.contains(&k.as_str())).map(|i| members.remove(i));
    let (xi, yi) = (take(["x", "images"]), take(["y", "labels"]));
    let (Some((xk, x)), Some((yk, y))) = (xi, yi) else {
        return Err(DataError::spec(ps, format!("npz needs arrays 'x' (or 'images') and 'y' (or 'labels'); it has {keys:?}")));
    };
    let (is, ls) = (format!("{ps}:{xk}.npy"), format!("{ps}:{yk}.npy"));
    let samples = npy_images(x, &is, opts.layout)?;
    let l = npy_labels(y, &ls)?;
    finish(samples, l, [&is, &ls], format!("npz:{ps}"), opts, None)
}

/// Loads an image folder (see [`crate::images::load_image_folder`]).
pub fn load_folder(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let ds = dir.display().to_string();
    let f = images::load_image_folder(dir, &FolderOptions { size: opts.size, color: opts.color })?;
    let classes = f.class_names.len();
    let mut d = finish(
        (Pixels::U8(f.data), f.shape, f.shape[1..].to_vec()),
        f.labels,
        [&ds, &ds],
        ds.clone(),
        &LoadOptions { size: None, color: None, ..*opts },
        Some(classes),
    )?;
    if d.num_classes == classes {
        d.class_names = f.class_names;
    }
    Ok(d)
}

/// Loads a dataset from a spec string with default [`LoadOptions`].
///
/// See the [module docs](self) for the spec syntax.
pub fn load_dataset(spec: &str) -> Result<Dataset, DataError> {
    load_dataset_with(spec, &LoadOptions::default())
}

/// A subset suffix of a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    First(usize),
    Span(usize, usize),
}

fn split_range(spec: &str) -> (&str, Option<Range>) {
    if let Some((head, tail)) = spec.rsplit_once(':') {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if digits(tail) {
            if let Ok(n) = tail.parse() {
                return (head, Some(Range::First(n)));
            }
        } else if let Some((a, b)) = tail.split_once("..") {
            if digits(a) && digits(b) {
                if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                    return (head, Some(Range::Span(a, b)));
                }
            }
        }
    }
    (spec, None)
}

fn two_paths<'a>(spec: &str, rest: &'a str) -> Result<(&'a Path, &'a Path), DataError> {
    match rest.split_once(',') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(',') => Ok((Path::new(a), Path::new(b))),
        _ => Err(DataError::spec(spec, "expected two comma-separated paths: IMAGES,LABELS")),
    }
}

/// Loads a dataset from a spec string (see the [module docs](self)).
pub fn load_dataset_with(spec: &str, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let (base, range) = split_range(spec);
    let ds = if let Some(split) = base.strip_prefix("fashion-mnist:") {
        let split = match split {
            "train" => FmnistSplit::Train,
            "val" => FmnistSplit::Val,
            "test" => FmnistSplit::Test,
            other => return Err(DataError::spec(spec, format!("unknown Fashion-MNIST split {other:?} (train, val or test)"))),
        };
        let mut d = load_fashion_mnist(split)?;
        if let Some(k) = opts.num_classes {
            check_labels(&d.labels, k, &d.source)?;
            d.num_classes = k;
            if k != d.class_names.len() {
                d.class_names.clear();
            }
        }
        if let Some(mode) = opts.color {
            d = d.convert_color(mode)?;
        }
        if let Some((h, w)) = opts.size {
            d = d.resize(h, w)?;
        }
        d
    } else if let Some(rest) = base.strip_prefix("idx:") {
        let (a, b) = two_paths(spec, rest)?;
        load_idx(a, b, opts)?
    } else if let Some(rest) = base.strip_prefix("npy:") {
        let (a, b) = two_paths(spec, rest)?;
        load_npy(a, b, opts)?
    } else if let Some(rest) = base.strip_prefix("npz:") {
        load_npz(Path::new(rest), opts)?
    } else if let Some(rest) = base.strip_prefix("dir:") {
        load_folder(Path::new(rest), opts)?
    } else if Path::new(base).is_dir() {
        load_folder(Path::new(base), opts)?
    } else if base.to_ascii_lowercase().ends_with(".npz") && Path::new(base).is_file() {
        load_npz(Path::new(base), opts)?
    } else {
        return Err(DataError::spec(
            spec,
            "expected fashion-mnist:{train,val,test}, idx:IMAGES,LABELS, npy:IMAGES.npy,LABELS.npy, npz:FILE, dir:PATH or an existing directory (optionally followed by :N or :A..B)",
        ));
    };
    let mut ds = match range {
        None => ds,
        Some(Range::First(n)) => ds.take(n)?,
        Some(Range::Span(a, b)) => {
            if b < a {
                return Err(DataError::spec(spec, format!("empty or reversed range {a}..{b}")));
            }
            ds.subset(a, b - a)?
        }
    };
    if range.is_some() {
        ds.source = spec.to_string();
    }
    Ok(ds)
}
