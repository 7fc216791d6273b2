//! Reader tests on small files written here, good and hostile.

use std::fs;
use std::path::{Path, PathBuf};

use super::coco::CocoGt;
use super::*;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("temper-detect-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn write_png(path: &Path, w: u32, h: u32) {
    let f = fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(f, w, h);
    enc.set_color(png::ColorType::Rgb);
    let mut wr = enc.write_header().unwrap();
    let data: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
    wr.write_image_data(&data).unwrap();
}

const COCO: &str = r#"{"images": [{"id": 7, "file_name": "a.png", "width": 40, "height": 20},
                {"id": 3, "file_name": "b.png", "width": 20, "height": 20}],
  "categories": [{"id": 5, "name": "scratch"}, {"id": 2, "name": "dent"}],
  "annotations": [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 2, 10, 5], "area": 30, "iscrowd": 0},
                  {"id": 2, "image_id": 7, "category_id": 2, "bbox": [0, 0, 40, 20], "iscrowd": 1}]}"#;

fn coco_err(json: &str) -> String {
    CocoGt::parse(json.as_bytes(), "gt.json").unwrap_err().to_string()
}

#[test]
fn coco_reads_boxes_classes_crowds_and_images() {
    let d = tmpdir("coco");
    fs::write(d.join("gt.json"), COCO).unwrap();
    write_png(&d.join("a.png"), 40, 20);
    write_png(&d.join("b.png"), 20, 20);
    let opts = DetLoadOptions { geometry: Some(Geometry::parse("letterbox:32x32:pad=0").unwrap()), color: ColorMode::Rgb };
    let ds = load_detection(&format!("coco:{}", d.join("gt.json").display()), &opts).unwrap();
    assert_eq!(ds.classes, ["dent", "scratch"], "sorted by category id");
    assert_eq!(ds.category_ids, [2, 5]);
    assert_eq!(ds.len(), 2);
    let a = &ds.samples[0];
    assert_eq!(a.boxes[0], DetBox { xyxy: [1.0, 2.0, 11.0, 7.0], class: 1, iscrowd: false, difficult: false, area: 30.0 });
    assert!(a.boxes[1].iscrowd && a.boxes[1].area == 800.0 && a.boxes[1].class == 0);
    assert!(ds.samples[1].boxes.is_empty(), "an image without objects is fine");
    let px = ds.pixels.as_ref().unwrap();
    assert_eq!(px.data.len(), 2 * 3 * 32 * 32);
    // 40x20 -> 32x16 at top 8: box scaled by 0.8 and shifted
    assert_eq!(ds.input_boxes(0).unwrap()[0].xyxy, [0.8, 9.6, 8.8, 13.6]);
    assert_eq!(px.image(0).unwrap()[0], 0, "pad row");
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn coco_hostile_inputs_name_what_and_where() {
    let e = coco_err("{\"images\": [\n{\"id\": 1,, }]}");
    assert!(e.contains("gt.json") && e.contains("line 2, column 10"), "{e}");
    let e = coco_err(&COCO.replace("\"id\": 3", "\"id\": 7"));
    assert!(e.contains("images[1]: duplicate image id 7"), "{e}");
    let e = coco_err(&COCO.replace("\"category_id\": 5", "\"category_id\": 9"));
    assert!(e.contains("annotations[0] (id 1): unknown category_id 9"), "{e}");
    let e = coco_err(&COCO.replace("\"image_id\": 7, \"category_id\": 5", "\"image_id\": 8, \"category_id\": 5"));
    assert!(e.contains("unknown image_id 8"), "{e}");
    let e = coco_err(&COCO.replace("[1, 2, 10, 5]", "[35, 2, 10, 5]"));
    assert!(e.contains("annotations[0] (id 1)") && e.contains("outside the 40x20 image"), "{e}");
    let e = coco_err(&COCO.replace("[1, 2, 10, 5]", "[1, 2, 0, 5]"));
    assert!(e.contains("non-positive width or height"), "{e}");
    let e = coco_err(&COCO.replace("\"id\": 2, \"image_id\"", "\"id\": 1, \"image_id\""));
    assert!(e.contains("annotations[1] (id 1): duplicate annotation id"), "{e}");
    let e = coco_err(r#"{"images": [], "categories": [{"id": 1, "name": "x"}]}"#);
    assert!(e.contains("empty data set") && e.contains("images"), "{e}");
    let e = coco_err(&COCO.replace("\"iscrowd\": 1", "\"iscrowd\": 2"));
    assert!(e.contains("iscrowd 2 is not 0 or 1"), "{e}");
    let gt = CocoGt::parse(COCO.as_bytes(), "gt.json").unwrap();
    let e =
        gt.parse_results(br#"[{"image_id": 7, "category_id": 4, "bbox": [0,0,1,1], "score": 0.5}]"#, "dt.json").unwrap_err().to_string();
    assert!(e.contains("dt.json: malformed: [0]: unknown category_id 4"), "{e}");
    // a missing image file
    let d = tmpdir("coco-missing");
    fs::write(d.join("gt.json"), COCO).unwrap();
    write_png(&d.join("a.png"), 40, 20);
    let e = coco::load_coco(&d.join("gt.json"), &d, &DetLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("images[1] (id 3)") && e.contains("b.png is missing"), "{e}");
    // not a regular file
    let e = CocoGt::read(&d).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn yolo_reads_normalized_boxes_and_rejects_bad_lines() {
    let d = tmpdir("yolo");
    let (im, lb) = (d.join("images"), d.join("labels"));
    fs::create_dir_all(&im).unwrap();
    fs::create_dir_all(&lb).unwrap();
    write_png(&im.join("x.png"), 100, 50);
    write_png(&im.join("y.png"), 10, 10);
    fs::write(d.join("classes.txt"), "ok\ndefect\n").unwrap();
    fs::write(lb.join("x.txt"), "1 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.2 0.2\n").unwrap();
    let spec = format!("yolo:{}:{}:{}", im.display(), lb.display(), d.join("classes.txt").display());
    let ds = load_detection(&spec, &DetLoadOptions::default()).unwrap();
    assert_eq!(ds.classes, ["ok", "defect"]);
    assert_eq!(ds.samples[0].boxes[0].xyxy, [40.0, 15.0, 60.0, 35.0]);
    assert_eq!(ds.samples[0].boxes[0].class, 1);
    assert_eq!(ds.samples[0].boxes[1].xyxy, [0.0, 0.0, 20.0, 10.0]);
    assert!(ds.samples[1].boxes.is_empty(), "no label file: no objects");
    fs::write(lb.join("x.txt"), "0 0.5 0.5 0.2 0.4\n2 0.5 0.5 0.2 0.4\n").unwrap();
    let e = load_detection(&spec, &DetLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("x.txt:2") && e.contains("label 2") && e.contains("only 2 classes"), "{e}");
    fs::write(lb.join("x.txt"), "0 0.9 0.5 0.4 0.4\n").unwrap();
    let e = load_detection(&spec, &DetLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("x.txt:1") && e.contains("outside the 100x50 image"), "{e}");
    fs::write(lb.join("x.txt"), "0 0.5 0.5 nan 0.4\n").unwrap();
    let e = load_detection(&spec, &DetLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("x.txt:1") && e.contains("non-finite"), "{e}");
    fs::write(lb.join("x.txt"), "0 0.5 0.5 0.4\n").unwrap();
    let e = load_detection(&spec, &DetLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("expected 5 fields"), "{e}");
    fs::write(lb.join("x.txt"), "").unwrap();
    fs::write(lb.join("z.txt"), "0 0.5 0.5 0.2 0.2\n").unwrap();
    let e = load_detection(&spec, &DetLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("z.txt") && e.contains("label file without an image"), "{e}");
    let empty = d.join("none");
    fs::create_dir_all(&empty).unwrap();
    let e = yolo::load_yolo(&empty, &lb, &d.join("classes.txt"), &DetLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("empty data set"), "{e}");
    let _ = fs::remove_dir_all(&d);
}

const VOC: &str = "<annotation>\n  <filename>p.png</filename>\n  <size><width>30</width><height>20</height><depth>3</depth></size>\n  <object><name>dent</name><difficult>1</difficult>\n    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>\n</annotation>\n";

#[test]
fn voc_reads_objects_and_reports_xml_positions() {
    let v = voc::parse_voc(VOC, "a.xml").unwrap();
    assert_eq!((v.width, v.height), (30, 20));
    assert_eq!(v.objects[0], voc::VocObject { name: "dent".into(), xyxy: [0.0, 1.0, 10.0, 20.0], difficult: true });
    let e = voc::parse_voc("<annotation>\n<filename>p.png</filename>\n<size></annotation>", "a.xml").unwrap_err().to_string();
    assert!(e.contains("a.xml") && e.contains("XML error at line 3"), "{e}");
    let e = voc::parse_voc(&VOC.replace("<xmax>10</xmax>", "<xmax>ten</xmax>"), "a.xml").unwrap_err().to_string();
    assert!(e.contains("object 1 (line 4)") && e.contains("\"ten\" is not a finite number (line 5"), "{e}");
    let e = voc::parse_voc(&VOC.replace("<xmax>10</xmax>", "<xmax>40</xmax>"), "a.xml").unwrap_err().to_string();
    assert!(e.contains("outside the 30x20 image"), "{e}");
    let e = voc::parse_voc(&VOC.replace("<bndbox>", "<box>").replace("</bndbox>", "</box>"), "a.xml").unwrap_err().to_string();
    assert!(e.contains("missing <bndbox>"), "{e}");

    let d = tmpdir("voc");
    fs::write(d.join("a.xml"), VOC).unwrap();
    write_png(&d.join("p.png"), 30, 20);
    let ds =
        voc::load_voc(&d, &d, None, &DetLoadOptions { geometry: Some(Geometry::parse("resize:10x15").unwrap()), color: ColorMode::Gray })
            .unwrap();
    assert_eq!(ds.classes, ["dent"]);
    assert_eq!(ds.pixels.as_ref().unwrap().data.len(), 150);
    assert_eq!(ds.input_boxes(0).unwrap()[0].xyxy, [0.0, 0.5, 5.0, 10.0]);
    fs::write(d.join("classes.txt"), "scratch\n").unwrap();
    let e = voc::load_voc(&d, &d, Some(&d.join("classes.txt")), &DetLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("a.xml") && e.contains("class \"dent\" is not in the class list"), "{e}");
    fs::remove_file(d.join("p.png")).unwrap();
    let e = voc::load_voc(&d, &d, None, &DetLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("p.png is missing"), "{e}");
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn bad_specs_are_errors() {
    for s in ["coco", "yolo:a:b", "voc:a", "pascal:a:b"] {
        assert!(DetFormat::parse(s).is_err(), "{s}");
    }
}
