//! YOLO txt labels: for each image `IMAGES/name.ext` a file `LABELS/name.txt` with one line
//! `class cx cy w h` per object (center and size normalized to 0..1 by the image size), and a
//! class-list file with one name per line. An image without a label file, or with an empty one,
//! has no objects. Image sizes come from decoding the images.
//!
//! Checked: five fields per line, an integer class below the number of classes, finite values,
//! positive size, the box inside the image (up to [`EDGE_TOLERANCE`](super::EDGE_TOLERANCE)
//! pixels); errors name `file:line`. A label file with no image is an error (a typo in a name
//! would otherwise drop its objects silently).

use std::collections::HashSet;
use std::path::Path;

use super::{
    check_box, list_images, list_with_ext, read_image_checked, read_text, DetBox, DetLoadOptions, DetSample, DetectionDataset,
    MAX_LABEL_BYTES,
};
use crate::error::{DataError, ErrorKind};

/// Reads a class-list file: one name per line, blank lines skipped; names must be unique.
pub fn read_class_list(path: &Path) -> Result<Vec<String>, DataError> {
    let text = read_text(path, MAX_LABEL_BYTES)?;
    let src = path.display().to_string();
    let mut names = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() {
            continue;
        }
        if !seen.insert(name.to_string()) {
            return Err(DataError::format(format!("{src}:{}", i + 1), format!("duplicate class name {name:?}")));
        }
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err(DataError::new(src, ErrorKind::Empty("no class names".into())));
    }
    Ok(names)
}

/// Parses the text of one YOLO label file for a `w × h` image with `num_classes` classes.
pub fn parse_labels(text: &str, src: &str, w: usize, h: usize, num_classes: usize) -> Result<Vec<DetBox>, DataError> {
    let mut boxes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{src}:{}", i + 1);
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 {
            return Err(DataError::format(at, format!("expected 5 fields `class cx cy w h`, found {}", f.len())));
        }
        let class: usize = f[0].parse().map_err(|_| DataError::format(&at, format!("class {:?} is not a non-negative integer", f[0])))?;
        if class >= num_classes {
            return Err(DataError::new(&at, ErrorKind::LabelOutOfRange { index: i, label: class as i64, num_classes: num_classes as u64 }));
        }
        let mut v = [0f64; 4];
        for (k, s) in f[1..].iter().enumerate() {
            v[k] = s.parse().map_err(|_| DataError::format(&at, format!("field {} ({s:?}) is not a number", k + 2)))?;
        }
        let [cx, cy, bw, bh] = v;
        let (fw, fh) = (w as f64, h as f64);
        let b = [(cx - bw / 2.0) * fw, (cy - bh / 2.0) * fh, (cx + bw / 2.0) * fw, (cy + bh / 2.0) * fh];
        let xyxy = check_box(&at, "object", b, w, h)?;
        let area = (xyxy[2] - xyxy[0]) * (xyxy[3] - xyxy[1]);
        boxes.push(DetBox { xyxy, class: class as u32, iscrowd: false, difficult: false, area });
    }
    Ok(boxes)
}

/// Loads a YOLO dataset (see the module docs).
pub fn load_yolo(images: &Path, labels: &Path, classes: &Path, opts: &DetLoadOptions) -> Result<DetectionDataset, DataError> {
    let names = read_class_list(classes)?;
    let files = list_images(images)?;
    if files.is_empty() {
        return Err(DataError::new(images.display().to_string(), ErrorKind::Empty("no PNG/JPEG images".into())));
    }
    let mut stems = HashSet::new();
    let mut samples = Vec::with_capacity(files.len());
    for (i, path) in files.into_iter().enumerate() {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if !stems.insert(stem.clone()) {
            return Err(DataError::format(path.display().to_string(), format!("two images share the name {stem:?} (one label file each)")));
        }
        let img = read_image_checked(&path)?;
        let label = labels.join(format!("{stem}.txt"));
        let boxes = if label.exists() {
            let text = read_text(&label, MAX_LABEL_BYTES)?;
            parse_labels(&text, &label.display().to_string(), img.width, img.height, names.len())?
        } else {
            Vec::new()
        };
        samples.push(DetSample { path, id: i as i64, width: img.width, height: img.height, boxes });
    }
    for label in list_with_ext(labels, &["txt"])? {
        let stem = label.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if !stems.contains(&stem) && label.canonicalize().ok() != classes.canonicalize().ok() {
            return Err(DataError::format(
                label.display().to_string(),
                format!("label file without an image {stem}.* in {}", images.display()),
            ));
        }
    }
    let k = names.len() as i64;
    let mut ds = DetectionDataset { classes: names, category_ids: (0..k).collect(), samples, pixels: None };
    ds.load_pixels(opts)?;
    Ok(ds)
}
