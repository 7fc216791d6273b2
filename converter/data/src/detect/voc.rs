//! Pascal VOC XML: one `<annotation>` file per image with `<filename>`, `<size>` (`width`,
//! `height`) and `<object>`s (`name`, `difficult`, `bndbox` with `xmin ymin xmax ymax`).
//!
//! VOC coordinates are 1-based inclusive pixel indices; they become 0-based pixel edges:
//! `x1 = xmin - 1`, `y1 = ymin - 1`, `x2 = xmax`, `y2 = ymax`. Classes come from a class-list
//! file (a name not in it is an error) or, without one, are the sorted names found.
//! Checked: well-formed XML (errors carry line and column), the required elements, numbers,
//! boxes inside the image; errors name the file and the object's position.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use roxmltree::{Document, Node};

use super::yolo::read_class_list;
use super::{check_box, list_with_ext, read_text, DetBox, DetLoadOptions, DetSample, DetectionDataset, MAX_LABEL_BYTES};
use crate::error::{DataError, ErrorKind};

/// One object of a VOC file, before classes are resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct VocObject {
    /// `name`.
    pub name: String,
    /// `[x1, y1, x2, y2]` 0-based pixel edges, checked and clipped.
    pub xyxy: [f32; 4],
    /// `difficult` (absent = false).
    pub difficult: bool,
}

/// One parsed VOC annotation file.
#[derive(Clone, Debug, PartialEq)]
pub struct VocFile {
    /// `filename`.
    pub filename: String,
    /// `size/width`.
    pub width: usize,
    /// `size/height`.
    pub height: usize,
    /// The objects.
    pub objects: Vec<VocObject>,
}

fn child<'a>(n: Node<'a, 'a>, name: &str) -> Option<Node<'a, 'a>> {
    n.children().find(|c| c.has_tag_name(name))
}

fn text_of(n: Node, name: &str, src: &str, what: &str) -> Result<String, DataError> {
    let c = child(n, name).ok_or_else(|| DataError::format(src, format!("{what}: missing <{name}>")))?;
    Ok(c.text().unwrap_or("").trim().to_string())
}

fn num_of(n: Node, name: &str, src: &str, what: &str, doc: &Document) -> Result<f64, DataError> {
    let t = text_of(n, name, src, what)?;
    let pos = child(n, name)
        .map(|c| doc.text_pos_at(c.range().start))
        .map(|p| format!(" (line {}, column {})", p.row, p.col))
        .unwrap_or_default();
    t.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| DataError::format(src, format!("{what}: <{name}> {t:?} is not a finite number{pos}")))
}

/// Parses one VOC XML document; `src` names it in errors.
pub fn parse_voc(text: &str, src: &str) -> Result<VocFile, DataError> {
    let doc = Document::parse(text).map_err(|e| {
        let p = e.pos();
        DataError::format(src, format!("XML error at line {}, column {}: {e}", p.row, p.col))
    })?;
    let root = doc.root_element();
    if !root.has_tag_name("annotation") {
        return Err(DataError::format(src, format!("root element is <{}>, expected <annotation>", root.tag_name().name())));
    }
    let filename = text_of(root, "filename", src, "annotation")?;
    if filename.is_empty() {
        return Err(DataError::format(src, "annotation: empty <filename>"));
    }
    let size = child(root, "size").ok_or_else(|| DataError::format(src, "annotation: missing <size>"))?;
    let dim = |name: &str| -> Result<usize, DataError> {
        let v = num_of(size, name, src, "size", &doc)?;
        if v < 1.0 || v > (1u32 << 20) as f64 || v.fract() != 0.0 {
            return Err(DataError::format(src, format!("size: <{name}> {v} is not an integer in 1..=2^20")));
        }
        Ok(v as usize)
    };
    let (width, height) = (dim("width")?, dim("height")?);
    let mut objects = Vec::new();
    for (i, obj) in root.children().filter(|c| c.has_tag_name("object")).enumerate() {
        let p = doc.text_pos_at(obj.range().start);
        let what = format!("object {} (line {})", i + 1, p.row);
        let name = text_of(obj, "name", src, &what)?;
        if name.is_empty() {
            return Err(DataError::format(src, format!("{what}: empty <name>")));
        }
        let difficult = match child(obj, "difficult").and_then(|d| d.text()).map(str::trim) {
            None | Some("0") | Some("") => false,
            Some("1") => true,
            Some(v) => return Err(DataError::format(src, format!("{what}: <difficult> {v:?} is not 0 or 1"))),
        };
        let bb = child(obj, "bndbox").ok_or_else(|| DataError::format(src, format!("{what}: missing <bndbox>")))?;
        let c = |n: &str| num_of(bb, n, src, &what, &doc);
        let (xmin, ymin, xmax, ymax) = (c("xmin")?, c("ymin")?, c("xmax")?, c("ymax")?);
        let xyxy = check_box(src, &format!("{what} {name:?}"), [xmin - 1.0, ymin - 1.0, xmax, ymax], width, height)?;
        objects.push(VocObject { name, xyxy, difficult });
    }
    Ok(VocFile { filename, width, height, objects })
}

/// Loads a VOC dataset: every `.xml` in `annotations` (sorted), images in `images`.
pub fn load_voc(annotations: &Path, images: &Path, classes: Option<&Path>, opts: &DetLoadOptions) -> Result<DetectionDataset, DataError> {
    let files = list_with_ext(annotations, &["xml"])?;
    if files.is_empty() {
        return Err(DataError::new(annotations.display().to_string(), ErrorKind::Empty("no .xml annotation files".into())));
    }
    let mut parsed: Vec<(PathBuf, VocFile)> = Vec::with_capacity(files.len());
    for f in files {
        let text = read_text(&f, MAX_LABEL_BYTES)?;
        let v = parse_voc(&text, &f.display().to_string())?;
        parsed.push((f, v));
    }
    let names: Vec<String> = match classes {
        Some(p) => read_class_list(p)?,
        None => parsed.iter().flat_map(|(_, v)| v.objects.iter().map(|o| o.name.clone())).collect::<BTreeSet<_>>().into_iter().collect(),
    };
    let mut samples = Vec::with_capacity(parsed.len());
    for (i, (f, v)) in parsed.into_iter().enumerate() {
        let src = f.display().to_string();
        let mut boxes = Vec::with_capacity(v.objects.len());
        for (j, o) in v.objects.iter().enumerate() {
            let class = names.iter().position(|n| *n == o.name).ok_or_else(|| {
                DataError::format(&src, format!("object {}: class {:?} is not in the class list ({} names)", j + 1, o.name, names.len()))
            })?;
            let area = (o.xyxy[2] - o.xyxy[0]) * (o.xyxy[3] - o.xyxy[1]);
            boxes.push(DetBox { xyxy: o.xyxy, class: class as u32, iscrowd: false, difficult: o.difficult, area });
        }
        let path = images.join(&v.filename);
        if !path.is_file() {
            return Err(DataError::format(src, format!("image file {} is missing or not a regular file", path.display())));
        }
        samples.push(DetSample { path, id: i as i64, width: v.width, height: v.height, boxes });
    }
    let k = names.len() as i64;
    let mut ds = DetectionDataset { classes: names, category_ids: (0..k).collect(), samples, pixels: None };
    ds.load_pixels(opts)?;
    Ok(ds)
}
