//! COCO bbox evaluation of a result file against a ground-truth file with temper's evaluator:
//! `coco_eval GT.json DT.json` prints `{"stats": [12], "per_class_ap": [K], "per_class_ap50": [K]}`
//! (classes in category-id order), the numbers `pycocotools` `COCOeval.stats` gives.
//! Used by `bench/map_vs_pycocotools.sh`.

use std::path::Path;
use std::process::ExitCode;

use temper_converter::detect::map::{evaluate, Detection, GroundTruth};
use temper_data::detect::coco::CocoGt;

fn json_list(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:e}")).collect();
    format!("[{}]", items.join(", "))
}

fn run(gt_path: &Path, dt_path: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let gt = CocoGt::read(gt_path)?;
    let results = gt.read_results(dt_path)?;
    // COCOeval accumulates images in ascending id order
    let order = gt.images_by_id();
    let mut rank = vec![0; order.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    let gts: Vec<GroundTruth> = gt
        .annotations
        .iter()
        .map(|a| GroundTruth { image: rank[a.image], class: a.class, bbox: a.bbox, area: a.area, iscrowd: a.iscrowd })
        .collect();
    let dts: Vec<Detection> =
        results.iter().map(|d| Detection { image: rank[d.image], class: d.class, bbox: d.bbox, score: d.score }).collect();
    let e = evaluate(gt.images.len(), gt.category_ids.len(), &gts, &dts)?;
    for line in e.summary_lines() {
        eprintln!("{line}");
    }
    Ok(format!(
        "{{\"stats\": {}, \"per_class_ap\": {}, \"per_class_ap50\": {}}}",
        json_list(&e.stats),
        json_list(&e.per_class_ap()),
        json_list(&e.per_class_ap50())
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: coco_eval GT.json DT.json");
        return ExitCode::from(2);
    }
    match run(Path::new(&args[1]), Path::new(&args[2])) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coco_eval: {e}");
            ExitCode::FAILURE
        }
    }
}
