//! COCO JSON: ground truth (`images`, `annotations`, `categories`) and result files (a list of
//! `{image_id, category_id, bbox, score}`).
//!
//! Boxes are `[x, y, w, h]`. Unknown fields (`segmentation`, `info`, `licenses`, ...) are ignored.
//! Checked: the JSON itself (errors carry line and column), unique image / category / annotation
//! ids, annotations pointing at known images and categories, image sizes > 0, boxes with
//! positive size inside their image (up to [`EDGE_TOLERANCE`](super::EDGE_TOLERANCE)), finite
//! areas and scores, at least one image. Classes are the categories sorted by id.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use super::{check_box, read_bounded, DetBox, DetLoadOptions, DetSample, DetectionDataset, MAX_JSON_BYTES};
use crate::error::{DataError, ErrorKind};

/// `iscrowd` as 0/1 or a boolean.
#[derive(Deserialize, Clone, Copy, Debug)]
#[serde(untagged)]
enum Flag {
    Int(i64),
    Bool(bool),
}

#[derive(Deserialize)]
struct RawImage {
    id: i64,
    file_name: String,
    width: i64,
    height: i64,
}

#[derive(Deserialize)]
struct RawAnn {
    #[serde(default)]
    id: Option<i64>,
    image_id: i64,
    category_id: i64,
    bbox: [f64; 4],
    #[serde(default)]
    area: Option<f64>,
    #[serde(default)]
    iscrowd: Option<Flag>,
}

#[derive(Deserialize)]
struct RawCat {
    id: i64,
    name: String,
}

#[derive(Deserialize)]
struct RawGt {
    images: Vec<RawImage>,
    #[serde(default)]
    annotations: Vec<RawAnn>,
    categories: Vec<RawCat>,
}

#[derive(Deserialize)]
struct RawResult {
    image_id: i64,
    category_id: i64,
    bbox: [f64; 4],
    score: f64,
}

/// One image of a COCO file.
#[derive(Clone, Debug, PartialEq)]
pub struct CocoImage {
    /// `id`.
    pub id: i64,
    /// `file_name`.
    pub file_name: String,
    /// `width`.
    pub width: usize,
    /// `height`.
    pub height: usize,
}

/// One annotation, values exactly as in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct CocoAnnotation {
    /// `id` (0 when absent).
    pub id: i64,
    /// Index into [`CocoGt::images`].
    pub image: usize,
    /// Class index (position of the category id in [`CocoGt::category_ids`]).
    pub class: usize,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
    /// `area`, or `w·h` when absent.
    pub area: f64,
    /// `iscrowd`.
    pub iscrowd: bool,
}

/// A validated COCO ground-truth file with its exact values.
#[derive(Clone, Debug, PartialEq)]
pub struct CocoGt {
    /// Images in file order.
    pub images: Vec<CocoImage>,
    /// Category ids, sorted ascending; a class index is a position here.
    pub category_ids: Vec<i64>,
    /// Category names, same order.
    pub category_names: Vec<String>,
    /// Annotations in file order.
    pub annotations: Vec<CocoAnnotation>,
}

/// One detection of a COCO result file.
#[derive(Clone, Debug, PartialEq)]
pub struct CocoResult {
    /// Index into [`CocoGt::images`].
    pub image: usize,
    /// Class index.
    pub class: usize,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
    /// `score`.
    pub score: f64,
}

fn json_error(src: &str, e: serde_json::Error) -> DataError {
    DataError::format(src, format!("JSON error at line {}, column {}: {e}", e.line(), e.column()))
}

impl CocoGt {
    /// Reads and validates a COCO ground-truth file.
    pub fn read(path: &Path) -> Result<CocoGt, DataError> {
        let bytes = read_bounded(path, MAX_JSON_BYTES)?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Parses and validates COCO ground-truth JSON; `src` names it in errors.
    pub fn parse(bytes: &[u8], src: &str) -> Result<CocoGt, DataError> {
        let raw: RawGt = serde_json::from_slice(bytes).map_err(|e| json_error(src, e))?;
        if raw.images.is_empty() {
            return Err(DataError::new(src, ErrorKind::Empty("\"images\" is empty".into())));
        }
        let mut image_index = HashMap::new();
        let mut images = Vec::with_capacity(raw.images.len());
        for (i, im) in raw.images.into_iter().enumerate() {
            if image_index.insert(im.id, i).is_some() {
                return Err(DataError::format(src, format!("images[{i}]: duplicate image id {}", im.id)));
            }
            if im.width <= 0 || im.height <= 0 || im.width > 1 << 20 || im.height > 1 << 20 {
                return Err(DataError::format(
                    src,
                    format!("images[{i}] (id {}): size {}x{} is not 1..=2^20 on each side", im.id, im.width, im.height),
                ));
            }
            if im.file_name.is_empty() {
                return Err(DataError::format(src, format!("images[{i}] (id {}): empty file_name", im.id)));
            }
            images.push(CocoImage { id: im.id, file_name: im.file_name, width: im.width as usize, height: im.height as usize });
        }
        let mut cats: Vec<(i64, String)> = Vec::with_capacity(raw.categories.len());
        let mut seen = HashSet::new();
        for (i, c) in raw.categories.into_iter().enumerate() {
            if !seen.insert(c.id) {
                return Err(DataError::format(src, format!("categories[{i}]: duplicate category id {}", c.id)));
            }
            cats.push((c.id, c.name));
        }
        if cats.is_empty() {
            return Err(DataError::new(src, ErrorKind::Empty("\"categories\" is empty".into())));
        }
        cats.sort_by_key(|c| c.0);
        let class_of: HashMap<i64, usize> = cats.iter().enumerate().map(|(k, c)| (c.0, k)).collect();
        let mut ann_ids = HashSet::new();
        let mut annotations = Vec::with_capacity(raw.annotations.len());
        for (i, a) in raw.annotations.into_iter().enumerate() {
            let what = format!("annotations[{i}]{}", a.id.map(|id| format!(" (id {id})")).unwrap_or_default());
            if let Some(id) = a.id {
                if !ann_ids.insert(id) {
                    return Err(DataError::format(src, format!("{what}: duplicate annotation id")));
                }
            }
            let image =
                *image_index.get(&a.image_id).ok_or_else(|| DataError::format(src, format!("{what}: unknown image_id {}", a.image_id)))?;
            let class = *class_of
                .get(&a.category_id)
                .ok_or_else(|| DataError::format(src, format!("{what}: unknown category_id {}", a.category_id)))?;
            let [x, y, w, h] = a.bbox;
            let im = &images[image];
            check_box(src, &what, [x, y, x + w, y + h], im.width, im.height)?;
            let area = a.area.unwrap_or(w * h);
            if !area.is_finite() || area < 0.0 {
                return Err(DataError::format(src, format!("{what}: area {area} is not a finite non-negative number")));
            }
            let iscrowd = match a.iscrowd {
                None | Some(Flag::Int(0)) | Some(Flag::Bool(false)) => false,
                Some(Flag::Int(1)) | Some(Flag::Bool(true)) => true,
                Some(Flag::Int(v)) => return Err(DataError::format(src, format!("{what}: iscrowd {v} is not 0 or 1"))),
            };
            annotations.push(CocoAnnotation { id: a.id.unwrap_or(0), image, class, bbox: a.bbox, area, iscrowd });
        }
        let (category_ids, category_names) = cats.into_iter().unzip();
        Ok(CocoGt { images, category_ids, category_names, annotations })
    }

    /// Reads a COCO result file (detections) against this ground truth: image and category ids
    /// must be known, values finite, widths and heights non-negative.
    pub fn read_results(&self, path: &Path) -> Result<Vec<CocoResult>, DataError> {
        let bytes = read_bounded(path, MAX_JSON_BYTES)?;
        self.parse_results(&bytes, &path.display().to_string())
    }

    /// [`read_results`](Self::read_results) on bytes; `src` names them in errors.
    pub fn parse_results(&self, bytes: &[u8], src: &str) -> Result<Vec<CocoResult>, DataError> {
        let raw: Vec<RawResult> = serde_json::from_slice(bytes).map_err(|e| json_error(src, e))?;
        let image_index: HashMap<i64, usize> = self.images.iter().enumerate().map(|(i, im)| (im.id, i)).collect();
        let class_of: HashMap<i64, usize> = self.category_ids.iter().enumerate().map(|(k, &c)| (c, k)).collect();
        raw.into_iter()
            .enumerate()
            .map(|(i, r)| {
                let image = *image_index
                    .get(&r.image_id)
                    .ok_or_else(|| DataError::format(src, format!("[{i}]: unknown image_id {}", r.image_id)))?;
                let class = *class_of
                    .get(&r.category_id)
                    .ok_or_else(|| DataError::format(src, format!("[{i}]: unknown category_id {}", r.category_id)))?;
                if r.bbox.iter().any(|v| !v.is_finite()) || r.bbox[2] < 0.0 || r.bbox[3] < 0.0 {
                    return Err(DataError::format(src, format!("[{i}]: bbox {:?} is not finite with w, h >= 0", r.bbox)));
                }
                if !r.score.is_finite() {
                    return Err(DataError::format(src, format!("[{i}]: score {} is not finite", r.score)));
                }
                Ok(CocoResult { image, class, bbox: r.bbox, score: r.score })
            })
            .collect()
    }

    /// Image indices sorted by image id (the order COCOeval accumulates images in).
    pub fn images_by_id(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.images.len()).collect();
        v.sort_by_key(|&i| self.images[i].id);
        v
    }
}

/// Loads a COCO dataset: `json` with image `file_name`s relative to `image_dir`. Every image file
/// must exist (and decode, when `opts.geometry` is set).
pub fn load_coco(json: &Path, image_dir: &Path, opts: &DetLoadOptions) -> Result<DetectionDataset, DataError> {
    let gt = CocoGt::read(json)?;
    let src = json.display().to_string();
    let mut samples: Vec<DetSample> = gt
        .images
        .iter()
        .map(|im| DetSample { path: image_dir.join(&im.file_name), id: im.id, width: im.width, height: im.height, boxes: Vec::new() })
        .collect();
    for (i, a) in gt.annotations.iter().enumerate() {
        let s = &mut samples[a.image];
        let [x, y, w, h] = a.bbox;
        let xyxy = check_box(&src, &format!("annotations[{i}]"), [x, y, x + w, y + h], s.width, s.height)?;
        s.boxes.push(DetBox { xyxy, class: a.class as u32, iscrowd: a.iscrowd, difficult: false, area: a.area as f32 });
    }
    for (i, s) in samples.iter().enumerate() {
        if !s.path.is_file() {
            return Err(DataError::format(
                &src,
                format!("images[{i}] (id {}): image file {} is missing or not a regular file", s.id, s.path.display()),
            ));
        }
    }
    let mut ds = DetectionDataset { classes: gt.category_names, category_ids: gt.category_ids, samples, pixels: None };
    ds.load_pixels(opts)?;
    Ok(ds)
}
