//! Detection datasets: COCO JSON, YOLO txt and Pascal VOC XML, read into one
//! [`DetectionDataset`].
//!
//! * [`coco`] — COCO `instances_*.json` (images, annotations, categories) and COCO result files
//!   (detections); the raw, exact values ([`coco::CocoGt`]) are kept for evaluation.
//! * [`yolo`] — one `class cx cy w h` (normalized) text file per image and a class-list file.
//! * [`voc`] — one Pascal VOC XML file per image (`object/name`, `bndbox`, `difficult`).
//! * [`geometry`] — letterbox or plain resize to the model size, recorded as data, with the box
//!   transform and its inverse.
//!
//! Boxes are absolute pixel `[x1, y1, x2, y2]` in the *source* image (`x2 > x1`, `y2 > y1`, inside
//! the image up to [`EDGE_TOLERANCE`] pixels, then clipped); classes are indices into
//! [`DetectionDataset::classes`]. Images without boxes are fine; a dataset without images is an
//! error. Every problem names the file and the entry (and line/column for JSON and XML); no input
//! makes a reader panic. Files are read only when they are regular files and under a size cap.

pub mod coco;
pub mod geometry;
pub mod voc;
pub mod yolo;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{DataError, ErrorKind};
use crate::images::{self, ColorMode, Image};
pub use geometry::{BoxTransform, Geometry, ResizeMode};

/// A box may exceed the image by this many pixels (rounding in exported labels); it is clipped.
pub const EDGE_TOLERANCE: f64 = 1.0;

/// Largest annotation file accepted (COCO JSON); XML and text label files: [`MAX_LABEL_BYTES`].
pub const MAX_JSON_BYTES: u64 = 1 << 30;

/// Largest VOC XML or YOLO text file, or class list, accepted.
pub const MAX_LABEL_BYTES: u64 = 16 << 20;

/// Largest image file accepted.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// One object.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetBox {
    /// `[x1, y1, x2, y2]` in source-image pixels.
    pub xyxy: [f32; 4],
    /// Class index.
    pub class: u32,
    /// COCO `iscrowd`: a crowd region (ignored by evaluation, may match several detections).
    pub iscrowd: bool,
    /// VOC `difficult`.
    pub difficult: bool,
    /// Area for COCO's area ranges: the annotation's `area` when given, else `w·h`.
    pub area: f32,
}

/// One image and its objects.
#[derive(Clone, Debug, PartialEq)]
pub struct DetSample {
    /// The image file.
    pub path: PathBuf,
    /// COCO image id; the position in the dataset for YOLO and VOC.
    pub id: i64,
    /// Source width in pixels.
    pub width: usize,
    /// Source height in pixels.
    pub height: usize,
    /// Objects (possibly none).
    pub boxes: Vec<DetBox>,
}

/// Options for the readers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DetLoadOptions {
    /// Decode the images and bring them to the model input: `None` reads annotations only (the
    /// image files must still exist; YOLO reads their size from them).
    pub geometry: Option<Geometry>,
    /// Channel layout of the decoded images.
    pub color: ColorMode,
}

/// Images at the model input size, planar `[N, C, H, W]`, with each image's box transform.
#[derive(Clone, Debug, PartialEq)]
pub struct DetPixels {
    /// How the images were resized.
    pub geometry: Geometry,
    /// Channels (1 or 3).
    pub channels: usize,
    /// `N·C·H·W` bytes.
    pub data: Vec<u8>,
    /// Per image: source box → input box.
    pub transforms: Vec<BoxTransform>,
}

impl DetPixels {
    /// Image `i` as `C·H·W` bytes.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.channels * self.geometry.height * self.geometry.width;
        self.data.get(i * n..(i + 1) * n)
    }

    /// Image `i` as `C·H·W` floats `(v / 255 - mean[c]) / std[c]`.
    pub fn image_f32(&self, i: usize, mean: &[f32], std: &[f32]) -> Option<Vec<f32>> {
        let hw = self.geometry.height * self.geometry.width;
        let img = self.image(i)?;
        Some(
            img.iter()
                .enumerate()
                .map(|(j, &v)| (v as f32 / 255.0 - mean.get(j / hw).copied().unwrap_or(0.0)) / std.get(j / hw).copied().unwrap_or(1.0))
                .collect(),
        )
    }
}

/// A detection dataset: class names, images with boxes, and (when decoded) the pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionDataset {
    /// Class names; a box's `class` indexes this.
    pub classes: Vec<String>,
    /// COCO category id per class (sorted ascending); `0..K` for YOLO and VOC.
    pub category_ids: Vec<i64>,
    /// The images, in reading order (COCO: file order).
    pub samples: Vec<DetSample>,
    /// Decoded images at the model size, when [`DetLoadOptions::geometry`] was set.
    pub pixels: Option<DetPixels>,
}

impl DetectionDataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when there are no images (readers never return such a dataset).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Total number of boxes.
    pub fn num_boxes(&self) -> usize {
        self.samples.iter().map(|s| s.boxes.len()).sum()
    }

    /// The boxes of image `i` on the model input (through its transform), when pixels are loaded.
    pub fn input_boxes(&self, i: usize) -> Option<Vec<DetBox>> {
        let t = self.pixels.as_ref()?.transforms.get(i)?;
        Some(self.samples.get(i)?.boxes.iter().map(|b| DetBox { xyxy: t.apply(b.xyxy), ..*b }).collect())
    }

    /// Decodes every image and applies `opts` (called by the readers).
    fn load_pixels(&mut self, opts: &DetLoadOptions) -> Result<(), DataError> {
        let Some(geometry) = opts.geometry else { return Ok(()) };
        let c = opts.color.channels();
        let per = geometry.height * geometry.width * c;
        let mut data = Vec::with_capacity(per.saturating_mul(self.samples.len()).min(1 << 30));
        let mut transforms = Vec::with_capacity(self.samples.len());
        for s in &self.samples {
            let img = read_image_checked(&s.path)?.convert(opts.color);
            if (img.width, img.height) != (s.width, s.height) {
                return Err(DataError::shape(
                    s.path.display().to_string(),
                    format!("image is {}x{} but its annotation says {}x{}", img.width, img.height, s.width, s.height),
                ));
            }
            let (out, t) = geometry.apply(&img)?;
            let hw = out.height * out.width;
            for ch in 0..c {
                data.extend(out.data.iter().skip(ch).step_by(c).take(hw));
            }
            transforms.push(t);
        }
        self.pixels = Some(DetPixels { geometry, channels: c, data, transforms });
        Ok(())
    }
}

/// Reads a regular file of at most `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, DataError> {
    let meta = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_file() {
        return Err(DataError::format(path.display().to_string(), "not a regular file"));
    }
    if meta.len() > max {
        return Err(DataError::format(path.display().to_string(), format!("file is {} bytes, the limit is {max}", meta.len())));
    }
    let f = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(max + 1).read_to_end(&mut buf).map_err(|e| DataError::io(path, e))?;
    if buf.len() as u64 > max {
        return Err(DataError::format(path.display().to_string(), format!("file grew past the limit of {max} bytes while read")));
    }
    Ok(buf)
}

/// Reads a text file (UTF-8) of at most `max` bytes.
pub(crate) fn read_text(path: &Path, max: u64) -> Result<String, DataError> {
    let bytes = read_bounded(path, max)?;
    String::from_utf8(bytes).map_err(|e| {
        DataError::at(path.display().to_string(), e.utf8_error().valid_up_to() as u64, ErrorKind::Format("not UTF-8 text".into()))
    })
}

/// Reads and decodes an image file, bounded.
pub(crate) fn read_image_checked(path: &Path) -> Result<Image, DataError> {
    let bytes = read_bounded(path, MAX_IMAGE_FILE_BYTES)?;
    images::decode_image(&bytes, &path.display().to_string())
}

/// Checks an `[x1, y1, x2, y2]` box against a `w × h` image and clips it within
/// [`EDGE_TOLERANCE`]; `what` names the entry in the error.
pub(crate) fn check_box(src: &str, what: &str, b: [f64; 4], w: usize, h: usize) -> Result<[f32; 4], DataError> {
    let [x1, y1, x2, y2] = b;
    if b.iter().any(|v| !v.is_finite()) {
        return Err(DataError::format(src, format!("{what}: box {b:?} has a non-finite coordinate")));
    }
    if x2 <= x1 || y2 <= y1 {
        return Err(DataError::format(src, format!("{what}: box [x1 {x1}, y1 {y1}, x2 {x2}, y2 {y2}] has a non-positive width or height")));
    }
    let t = EDGE_TOLERANCE;
    if x1 < -t || y1 < -t || x2 > w as f64 + t || y2 > h as f64 + t {
        return Err(DataError::format(src, format!("{what}: box [x1 {x1}, y1 {y1}, x2 {x2}, y2 {y2}] lies outside the {w}x{h} image")));
    }
    let c = |v: f64, hi: usize| v.clamp(0.0, hi as f64) as f32;
    Ok([c(x1, w), c(y1, h), c(x2, w), c(y2, h)])
}

/// Which reader [`load_detection`] uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetFormat {
    /// `coco:ANNOTATIONS.json[:IMAGE_DIR]` (image dir defaults to the JSON's folder).
    Coco {
        /// The annotation file.
        json: PathBuf,
        /// Folder the `file_name`s are relative to.
        images: PathBuf,
    },
    /// `yolo:IMAGE_DIR:LABEL_DIR:CLASSES.txt`.
    Yolo {
        /// Image folder.
        images: PathBuf,
        /// Label folder (`stem.txt` per image).
        labels: PathBuf,
        /// One class name per line.
        classes: PathBuf,
    },
    /// `voc:ANNOTATION_DIR:IMAGE_DIR[:CLASSES.txt]` (classes default to the sorted names found).
    Voc {
        /// Folder of `.xml` files.
        annotations: PathBuf,
        /// Image folder.
        images: PathBuf,
        /// Optional class list.
        classes: Option<PathBuf>,
    },
}

impl DetFormat {
    /// Parses a spec string (see the variants).
    pub fn parse(spec: &str) -> Result<DetFormat, DataError> {
        let parts: Vec<&str> = spec.split(':').collect();
        let p = |i: usize| PathBuf::from(parts[i]);
        match (parts[0], parts.len()) {
            ("coco", 2) => Ok(DetFormat::Coco { json: p(1), images: p(1).parent().map(Path::to_path_buf).unwrap_or_default() }),
            ("coco", 3) => Ok(DetFormat::Coco { json: p(1), images: p(2) }),
            ("yolo", 4) => Ok(DetFormat::Yolo { images: p(1), labels: p(2), classes: p(3) }),
            ("voc", 3) => Ok(DetFormat::Voc { annotations: p(1), images: p(2), classes: None }),
            ("voc", 4) => Ok(DetFormat::Voc { annotations: p(1), images: p(2), classes: Some(p(3)) }),
            _ => Err(DataError::spec(
                spec,
                "expected coco:ANN.json[:IMAGES], yolo:IMAGES:LABELS:CLASSES.txt or voc:ANNOTATIONS:IMAGES[:CLASSES.txt]",
            )),
        }
    }
}

/// Loads a detection dataset from a spec string ([`DetFormat::parse`]).
pub fn load_detection(spec: &str, opts: &DetLoadOptions) -> Result<DetectionDataset, DataError> {
    match DetFormat::parse(spec)? {
        DetFormat::Coco { json, images } => coco::load_coco(&json, &images, opts),
        DetFormat::Yolo { images, labels, classes } => yolo::load_yolo(&images, &labels, &classes, opts),
        DetFormat::Voc { annotations, images, classes } => voc::load_voc(&annotations, &images, classes.as_deref(), opts),
    }
}

/// Image files in `dir` (by extension, sorted by name).
pub(crate) fn list_images(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    list_with_ext(dir, images::IMAGE_EXTENSIONS)
}

/// Regular files in `dir` whose lower-case extension is in `exts`, sorted by name.
pub(crate) fn list_with_ext(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>, DataError> {
    let rd = fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        let ok = path.extension().and_then(|e| e.to_str()).is_some_and(|e| exts.contains(&e.to_ascii_lowercase().as_str()));
        if ok && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests;
