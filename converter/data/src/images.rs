//! Image decoding (PNG, JPEG), resizing, channel handling and image folders.
//!
//! Decoded images are [`Image`]s: 8-bit, interleaved (HWC), with 1 (gray) or
//! 3 (RGB) channels:
//!
//! * PNG: every color type and bit depth. Palette and low-bit gray are
//!   expanded; 16-bit samples are downscaled to 8 bits with rounding
//!   (`round(v * 255 / 65535)`); alpha (including `tRNS`) is discarded, as
//!   PIL's `convert("RGB")` does. Animated PNGs yield their default image.
//! * JPEG: baseline and progressive (and lossless) via `jpeg-decoder`;
//!   grayscale stays 1 channel, CMYK/YCCK is converted to RGB
//!   (`r = (255-c)(255-k)/255`), 16-bit gray is downscaled like PNG.
//!
//! The format is detected from the magic bytes (`89 50 4E 47` / `FF D8 FF`),
//! never from the file extension. Decoded images larger than
//! [`MAX_IMAGE_BYTES`] are rejected before allocation.
//!
//! Preprocessing ([`Preprocess`]) converts color ([`ColorMode`]: gray via ITU-R
//! 601-2 luma like PIL's `convert("L")`, RGB, or BGR) and resizes with a
//! bilinear (triangle) filter in the manner of PIL's `Image.resize(...,
//! BILINEAR)`: pixel centers at half-integers, and when downscaling the filter
//! support is widened by the scale factor so every source pixel contributes
//! (antialiasing). The result is written planar (CHW) for `[N, C, H, W]`
//! tensors.
//!
//! [`load_image_folder`] reads a torchvision-`ImageFolder`-style directory:
//! one sub-folder per class, class index = position of the folder name in
//! byte-wise sorted order.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{DataError, ErrorKind};

/// Largest decoded image (in bytes of the decoder's output) that is accepted.
pub const MAX_IMAGE_BYTES: usize = 1 << 28;

/// File extensions (lower-case, without dot) picked up by [`load_image_folder`].
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "jpe", "jfif"];

/// An 8-bit interleaved (HWC) image with 1 (gray) or 3 (RGB) channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (gray) or 3 (RGB, in that order).
    pub channels: usize,
    /// `height * width * channels` bytes, row-major, channels interleaved.
    pub data: Vec<u8>,
}

/// Output channel layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMode {
    /// One channel, ITU-R 601-2 luma (`L = (299 R + 587 G + 114 B) / 1000`, rounded).
    Gray,
    /// Three channels, red first.
    #[default]
    Rgb,
    /// Three channels, blue first (OpenCV order).
    Bgr,
}

impl ColorMode {
    /// Number of output channels (1 or 3).
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Gray => 1,
            ColorMode::Rgb | ColorMode::Bgr => 3,
        }
    }

    /// Parses `gray`/`grey`/`l`, `rgb`, `bgr` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "gray" | "grey" | "l" => Some(ColorMode::Gray),
            "rgb" => Some(ColorMode::Rgb),
            "bgr" => Some(ColorMode::Bgr),
            _ => None,
        }
    }
}

/// Image preprocessing applied before images become tensor rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Preprocess {
    /// Target `(height, width)`; `None` keeps the decoded size.
    pub size: Option<(usize, usize)>,
    /// Output channel layout.
    pub color: ColorMode,
}

impl Image {
    /// Builds an image, checking that `data` has `height * width * channels`
    /// bytes and that `channels` is 1 or 3.
    pub fn new(width: usize, height: usize, channels: usize, data: Vec<u8>) -> Result<Self, DataError> {
        let want = width.checked_mul(height).and_then(|x| x.checked_mul(channels));
        if !(channels == 1 || channels == 3) || want != Some(data.len()) {
            return Err(DataError::shape(
                "<image>",
                format!("{width}x{height}x{channels} does not match {} bytes (channels must be 1 or 3)", data.len()),
            ));
        }
        Ok(Image { width, height, channels, data })
    }

    /// Converts to the given channel layout (gray is replicated to RGB/BGR,
    /// color becomes luma for gray).
    pub fn convert(&self, mode: ColorMode) -> Image {
        let n = self.width * self.height;
        let data = match (self.channels, mode) {
            (1, ColorMode::Gray) => self.data.clone(),
            (1, _) => self.data.iter().flat_map(|&g| [g, g, g]).collect(),
            (_, ColorMode::Gray) => self.data.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect(),
            (_, ColorMode::Rgb) => self.data.clone(),
            (_, ColorMode::Bgr) => self.data.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect(),
        };
        debug_assert_eq!(data.len(), n * mode.channels());
        Image { width: self.width, height: self.height, channels: mode.channels(), data }
    }

    /// Resizes to `height` x `width` with the bilinear filter described in the
    /// module docs. Returns a copy if the size is unchanged; an image with a
    /// zero dimension or a zero target size gives an error.
    pub fn resize(&self, height: usize, width: usize) -> Result<Image, DataError> {
        let data = resize_bilinear_hwc(&self.data, self.height, self.width, self.channels, height, width)?;
        Ok(Image { width, height, channels: self.channels, data })
    }

    /// Applies `pre` and appends the result to `out` in planar CHW order.
    pub fn append_chw(&self, pre: &Preprocess, out: &mut Vec<u8>) -> Result<(), DataError> {
        let conv = self.convert(pre.color);
        let img = match pre.size {
            Some((h, w)) if (h, w) != (conv.height, conv.width) => conv.resize(h, w)?,
            _ => conv,
        };
        hwc_to_chw_into(&img.data, img.height * img.width, img.channels, out);
        Ok(())
    }
}

/// ITU-R 601-2 luma, rounded (PIL's `convert("L")`).
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114 + 500) / 1000) as u8
}

fn hwc_to_chw_into(hwc: &[u8], pixels: usize, c: usize, out: &mut Vec<u8>) {
    out.reserve(pixels * c);
    for ch in 0..c {
        out.extend(hwc.iter().skip(ch).step_by(c).take(pixels));
    }
}

/// Converts planar CHW bytes to interleaved HWC.
pub fn chw_to_hwc(chw: &[u8], c: usize) -> Vec<u8> {
    if c == 0 {
        return Vec::new();
    }
    let pixels = chw.len() / c;
    let mut out = vec![0u8; pixels * c];
    for ch in 0..c {
        for (i, &v) in chw[ch * pixels..(ch + 1) * pixels].iter().enumerate() {
            out[i * c + ch] = v;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Resize
// ---------------------------------------------------------------------------

/// Per-output-position filter taps: first source index and weights.
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<f32>>,
}

fn taps(in_len: usize, out_len: usize) -> Taps {
    let scale = in_len as f64 / out_len as f64;
    let fscale = scale.max(1.0);
    let support = fscale; // triangle filter has radius 1, widened when downscaling
    let mut start = Vec::with_capacity(out_len);
    let mut weights = Vec::with_capacity(out_len);
    for i in 0..out_len {
        let center = (i as f64 + 0.5) * scale;
        let lo = ((center - support).floor().max(0.0)) as usize;
        let hi = (((center + support).ceil()) as usize).min(in_len);
        let mut w: Vec<f64> = (lo..hi)
            .map(|j| {
                let x = (j as f64 + 0.5 - center) / fscale;
                (1.0 - x.abs()).max(0.0)
            })
            .collect();
        let sum: f64 = w.iter().sum();
        if sum > 0.0 {
            w.iter_mut().for_each(|v| *v /= sum);
        } else {
            // Cannot happen for lo < hi, but stay total: nearest pixel.
            w = vec![1.0];
        }
        let lo = lo.min(in_len.saturating_sub(w.len()));
        start.push(lo);
        weights.push(w.into_iter().map(|v| v as f32).collect());
    }
    Taps { start, weights }
}

fn clamp_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Resizes an interleaved HWC `u8` image (see the module docs for the filter).
///
/// The horizontal pass runs first and its result is rounded to `u8`, as PIL
/// does; the vertical pass follows.
pub fn resize_bilinear_hwc(src: &[u8], in_h: usize, in_w: usize, c: usize, out_h: usize, out_w: usize) -> Result<Vec<u8>, DataError> {
    let label = "<resize>";
    if in_h == 0 || in_w == 0 || out_h == 0 || out_w == 0 || c == 0 {
        return Err(DataError::shape(label, format!("cannot resize {in_h}x{in_w} to {out_h}x{out_w} (zero size)")));
    }
    let in_len = in_h.checked_mul(in_w).and_then(|x| x.checked_mul(c));
    if in_len != Some(src.len()) {
        return Err(DataError::shape(label, format!("{in_h}x{in_w}x{c} does not match {} bytes", src.len())));
    }
    let out_len = out_h
        .checked_mul(out_w)
        .and_then(|x| x.checked_mul(c))
        .filter(|&n| n <= MAX_IMAGE_BYTES)
        .ok_or_else(|| DataError::shape(label, format!("target size {out_h}x{out_w}x{c} is too large")))?;
    if (in_h, in_w) == (out_h, out_w) {
        return Ok(src.to_vec());
    }
    // Horizontal pass: in_h x out_w.
    let tmp: Vec<u8> = if in_w == out_w {
        src.to_vec()
    } else {
        let t = taps(in_w, out_w);
        let mut tmp = vec![0u8; in_h * out_w * c];
        for y in 0..in_h {
            let row = &src[y * in_w * c..(y + 1) * in_w * c];
            for x in 0..out_w {
                let s = t.start[x];
                for ch in 0..c {
                    let acc: f32 = t.weights[x].iter().enumerate().map(|(k, &w)| w * f32::from(row[(s + k) * c + ch])).sum();
                    tmp[(y * out_w + x) * c + ch] = clamp_u8(acc);
                }
            }
        }
        tmp
    };
    if in_h == out_h {
        return Ok(tmp);
    }
    // Vertical pass: out_h x out_w.
    let t = taps(in_h, out_h);
    let stride = out_w * c;
    let mut out = vec![0u8; out_len];
    let mut acc = vec![0f32; stride];
    for y in 0..out_h {
        acc.iter_mut().for_each(|a| *a = 0.0);
        let s = t.start[y];
        for (k, &w) in t.weights[y].iter().enumerate() {
            let row = &tmp[(s + k) * stride..(s + k + 1) * stride];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += w * f32::from(v);
            }
        }
        for (o, &a) in out[y * stride..(y + 1) * stride].iter_mut().zip(&acc) {
            *o = clamp_u8(a);
        }
    }
    Ok(out)
}

/// Resizes a planar CHW `u8` image (each channel independently).
pub fn resize_bilinear_chw(src: &[u8], c: usize, in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Result<Vec<u8>, DataError> {
    let plane = in_h.saturating_mul(in_w);
    if c == 0 || plane.checked_mul(c) != Some(src.len()) {
        return Err(DataError::shape("<resize>", format!("{c}x{in_h}x{in_w} does not match {} bytes", src.len())));
    }
    let mut out = Vec::with_capacity(out_h.saturating_mul(out_w).saturating_mul(c).min(MAX_IMAGE_BYTES));
    for ch in 0..c {
        out.extend(resize_bilinear_hwc(&src[ch * plane..(ch + 1) * plane], in_h, in_w, 1, out_h, out_w)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// Detected container format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    Png,
    /// JPEG (`FF D8 FF`).
    Jpeg,
}

/// Detects PNG or JPEG from the first bytes.
pub fn detect_format(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else {
        None
    }
}

/// Largest PNG or JPEG file [`read_image`] reads (256 MiB).
pub const IMAGE_FILE_MAX: u64 = 256 << 20;

/// Reads and decodes a PNG or JPEG file.
///
/// Files over [`IMAGE_FILE_MAX`] bytes and special files are refused before reading (see
/// [`crate::fsread`]).
pub fn read_image(path: &Path) -> Result<Image, DataError> {
    let bytes = crate::fsread::read_input(path, IMAGE_FILE_MAX, "an image file may have")?;
    decode_image(&bytes, &path.display().to_string())
}

/// Decodes PNG or JPEG bytes (format detected by magic); `label` names the
/// source in errors.
pub fn decode_image(bytes: &[u8], label: &str) -> Result<Image, DataError> {
    match detect_format(bytes) {
        Some(ImageFormat::Png) => decode_png(bytes, label),
        Some(ImageFormat::Jpeg) => decode_jpeg(bytes, label),
        None => Err(DataError::at(
            label,
            0,
            ErrorKind::BadMagic { expected: "PNG (89 50 4e 47) or JPEG (ff d8 ff)".into(), found: bytes[..bytes.len().min(8)].to_vec() },
        )),
    }
}

/// Runs a third-party decoder, turning a panic inside it into an error so that
/// malformed files can never abort the caller.
fn guarded<T>(label: &str, what: &str, f: impl FnOnce() -> Result<T, DataError> + std::panic::UnwindSafe) -> Result<T, DataError> {
    std::panic::catch_unwind(f).unwrap_or_else(|_| Err(DataError::format(label, format!("{what} decoder failed on malformed input"))))
}

fn down16(hi: u8, lo: u8) -> u8 {
    let v = u32::from(u16::from_be_bytes([hi, lo]));
    ((v * 255 + 32767) / 65535) as u8
}

/// Decodes a PNG held in memory.
pub fn decode_png(bytes: &[u8], label: &str) -> Result<Image, DataError> {
    guarded(label, "PNG", || {
        let fmt_err = |e: png::DecodingError| DataError::format(label, format!("PNG: {e}"));
        let mut dec = png::Decoder::new_with_limits(bytes, png::Limits { bytes: MAX_IMAGE_BYTES });
        dec.set_transformations(png::Transformations::EXPAND);
        let mut reader = dec.read_info().map_err(fmt_err)?;
        let size = reader.output_buffer_size();
        if size > MAX_IMAGE_BYTES {
            return Err(DataError::shape(label, format!("decoded PNG would take {size} bytes (limit {MAX_IMAGE_BYTES})")));
        }
        let mut buf = vec![0u8; size];
        let info = reader.next_frame(&mut buf).map_err(fmt_err)?;
        let (w, h) = (info.width as usize, info.height as usize);
        let src_ch = match info.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => {
                return Err(DataError::format(label, "PNG palette was not expanded"));
            }
        };
        let sixteen = info.bit_depth == png::BitDepth::Sixteen;
        if !sixteen && info.bit_depth != png::BitDepth::Eight {
            return Err(DataError::format(label, format!("PNG bit depth {:?} was not expanded", info.bit_depth)));
        }
        let bps = if sixteen { 2 } else { 1 };
        let row_bytes = w * src_ch * bps;
        if info.line_size < row_bytes || buf.len() < info.line_size * h.saturating_sub(1) + row_bytes * usize::from(h > 0) {
            return Err(DataError::format(label, "PNG decoder returned a short frame"));
        }
        let out_ch = if src_ch <= 2 { 1 } else { 3 };
        let mut data = Vec::with_capacity(w * h * out_ch);
        for y in 0..h {
            let row = &buf[y * info.line_size..y * info.line_size + row_bytes];
            for px in row.chunks_exact(src_ch * bps) {
                for c in 0..out_ch {
                    let v = if sixteen { down16(px[2 * c], px[2 * c + 1]) } else { px[c] };
                    data.push(v);
                }
            }
        }
        Image::new(w, h, out_ch, data).map_err(|e| DataError { source_name: label.to_string(), ..e })
    })
}

/// Decodes a JPEG held in memory.
pub fn decode_jpeg(bytes: &[u8], label: &str) -> Result<Image, DataError> {
    guarded(label, "JPEG", || {
        let mut dec = jpeg_decoder::Decoder::new(bytes);
        dec.set_max_decoding_buffer_size(MAX_IMAGE_BYTES);
        let pixels = dec.decode().map_err(|e| DataError::format(label, format!("JPEG: {e}")))?;
        let info = dec.info().ok_or_else(|| DataError::format(label, "JPEG: no frame header"))?;
        let (w, h) = (usize::from(info.width), usize::from(info.height));
        let n = w * h;
        let want = n * info.pixel_format.pixel_bytes();
        if pixels.len() != want {
            return Err(DataError::format(label, format!("JPEG decoder returned {} bytes, expected {want}", pixels.len())));
        }
        let (channels, data) = match info.pixel_format {
            jpeg_decoder::PixelFormat::L8 => (1, pixels),
            jpeg_decoder::PixelFormat::L16 => (
                1,
                pixels
                    .chunks_exact(2)
                    .map(|p| {
                        let [hi, lo] = u16::from_ne_bytes([p[0], p[1]]).to_be_bytes();
                        down16(hi, lo)
                    })
                    .collect(),
            ),
            jpeg_decoder::PixelFormat::RGB24 => (3, pixels),
            jpeg_decoder::PixelFormat::CMYK32 => (
                3,
                pixels
                    .chunks_exact(4)
                    .flat_map(|p| {
                        let k = 255 - u32::from(p[3]);
                        let f = |c: u8| ((255 - u32::from(c)) * k / 255) as u8;
                        [f(p[0]), f(p[1]), f(p[2])]
                    })
                    .collect(),
            ),
        };
        Image::new(w, h, channels, data).map_err(|e| DataError { source_name: label.to_string(), ..e })
    })
}

// ---------------------------------------------------------------------------
// Image folders
// ---------------------------------------------------------------------------

/// Images of an image folder, decoded and preprocessed into one NCHW tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFolder {
    /// `N * C * H * W` bytes, NCHW.
    pub data: Vec<u8>,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// Class index of each image.
    pub labels: Vec<u32>,
    /// Class folder names; `labels` index into this.
    pub class_names: Vec<String>,
    /// Path of each image, in load order.
    pub files: Vec<PathBuf>,
}

/// Options of [`load_image_folder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FolderOptions {
    /// Target `(height, width)`. `None`: every image must have the size of the
    /// first one (otherwise an error asks for a size).
    pub size: Option<(usize, usize)>,
    /// Output channels; `None` picks RGB if any image has color, else gray.
    pub color: Option<ColorMode>,
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|e| DataError::io(dir, e))?;
        let p = e.path();
        if !is_hidden(&p) {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

fn collect_images(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    if depth > 32 {
        return Err(DataError::format(dir.display().to_string(), "directory nesting too deep"));
    }
    for p in sorted_entries(dir)? {
        if p.is_dir() {
            collect_images(&p, depth + 1, out)?;
        } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())) {
            out.push(p);
        }
    }
    Ok(())
}

/// Result of [`list_image_folder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderListing {
    /// Sorted class folder names; a class index is a position in this list.
    pub class_names: Vec<String>,
    /// Image files with their class index, in load order.
    pub files: Vec<(PathBuf, u32)>,
}

/// Lists an image folder: class names (sorted sub-folder names) and, per
/// class, the image files (recursively, sorted, by extension in
/// [`IMAGE_EXTENSIONS`], hidden entries skipped).
///
/// Errors: no class folders, or a class folder without images (like
/// torchvision's `ImageFolder`).
pub fn list_image_folder(root: &Path) -> Result<FolderListing, DataError> {
    let label = root.display().to_string();
    let classes: Vec<PathBuf> = sorted_entries(root)?.into_iter().filter(|p| p.is_dir()).collect();
    if classes.is_empty() {
        return Err(DataError::new(label, ErrorKind::Empty("no class sub-folders".into())));
    }
    if classes.len() > u32::MAX as usize {
        return Err(DataError::format(label, "too many classes"));
    }
    let mut names = Vec::with_capacity(classes.len());
    let mut files = Vec::new();
    for (i, c) in classes.iter().enumerate() {
        names.push(c.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let before = files.len();
        let mut found = Vec::new();
        collect_images(c, 0, &mut found)?;
        files.extend(found.into_iter().map(|p| (p, i as u32)));
        if files.len() == before {
            return Err(DataError::new(
                c.display().to_string(),
                ErrorKind::Empty("class folder contains no .png/.jpg/.jpeg images".into()),
            ));
        }
    }
    Ok(FolderListing { class_names: names, files })
}

/// Loads an image folder into one `[N, C, H, W]` `u8` tensor.
pub fn load_image_folder(root: &Path, opts: &FolderOptions) -> Result<ImageFolder, DataError> {
    let FolderListing { class_names, files } = list_image_folder(root)?;
    // Decode everything first when the color mode must be inferred; otherwise
    // stream straight into the output tensor.
    let mut data = Vec::new();
    let mut decoded: Vec<Image> = Vec::new();
    let mut size = opts.size;
    let mut any_color = false;
    for (path, _) in &files {
        let img = read_image(path)?;
        if img.width == 0 || img.height == 0 {
            return Err(DataError::shape(path.display().to_string(), "image has a zero dimension"));
        }
        let (h, w) = *size.get_or_insert((img.height, img.width));
        if opts.size.is_none() && (img.height, img.width) != (h, w) {
            return Err(DataError::shape(
                path.display().to_string(),
                format!("image is {}x{} but the first image is {h}x{w}; set a target size to resize", img.height, img.width),
            ));
        }
        any_color |= img.channels == 3;
        match opts.color {
            Some(color) => img.append_chw(&Preprocess { size, color }, &mut data)?,
            None => decoded.push(img),
        }
    }
    let color = opts.color.unwrap_or(if any_color { ColorMode::Rgb } else { ColorMode::Gray });
    for img in decoded {
        img.append_chw(&Preprocess { size, color }, &mut data)?;
    }
    let (h, w) = size.unwrap_or((0, 0));
    let shape = [files.len(), color.channels(), h, w];
    let labels = files.iter().map(|(_, l)| *l).collect();
    let files = files.into_iter().map(|(p, _)| p).collect();
    Ok(ImageFolder { data, shape, labels, class_names, files })
}
