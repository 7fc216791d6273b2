//! temper's COCO evaluator against pycocotools on seeded random cases written by
//! `bench/map_vs_pycocotools.py` (crowds, tied scores, every area range, >100 detections on an
//! image): the 12 stats and per-class AP / AP50 agree to 1e-4. Needs a Python with pycocotools
//! (`TEMPER_COCO_VENV`, else `/tmp/temper-coco-venv` as `bench/map_vs_pycocotools.sh` creates it,
//! else `python3`); skipped through `temper_testkit` otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use temper_converter::detect::map::{evaluate, Detection, GroundTruth};
use temper_data::detect::coco::CocoGt;
use temper_testkit::{skip, workspace_root, Need};

fn python_with_pycocotools() -> Option<PathBuf> {
    let venv = std::env::var_os("TEMPER_COCO_VENV").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp/temper-coco-venv"));
    [venv.join("bin/python"), PathBuf::from("python3")]
        .into_iter()
        .find(|p| Command::new(p).args(["-c", "import pycocotools, numpy"]).output().is_ok_and(|o| o.status.success()))
}

fn floats(v: &serde_json::Value, key: &str) -> Vec<f64> {
    v[key].as_array().unwrap_or_else(|| panic!("expected.json lacks {key}")).iter().map(|x| x.as_f64().unwrap()).collect()
}

fn check_case(dir: &Path) -> f64 {
    let gt = CocoGt::read(&dir.join("gt.json")).unwrap();
    let res = gt.read_results(&dir.join("dt.json")).unwrap();
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
        res.iter().map(|d| Detection { image: rank[d.image], class: d.class, bbox: d.bbox, score: d.score }).collect();
    let e = evaluate(gt.images.len(), gt.category_ids.len(), &gts, &dts).unwrap();
    let want: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let mut worst = 0.0f64;
    for (key, got) in [("stats", e.stats.to_vec()), ("per_class_ap", e.per_class_ap()), ("per_class_ap50", e.per_class_ap50())] {
        let w = floats(&want, key);
        assert_eq!(w.len(), got.len(), "{}: {key} length", dir.display());
        for (i, (a, b)) in w.iter().zip(&got).enumerate() {
            assert!((a - b).abs() <= 1e-4, "{}: {key}[{i}] pycocotools {a} temper {b}", dir.display());
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

#[test]
fn map_agrees_with_pycocotools() {
    let Some(py) = python_with_pycocotools() else {
        skip(Need::Python, "python with pycocotools + numpy (bench/map_vs_pycocotools.sh creates /tmp/temper-coco-venv)");
        return;
    };
    let out = std::env::temp_dir().join(format!("temper-map-test-{}", std::process::id()));
    let script = workspace_root().join("bench/map_vs_pycocotools.py");
    let st = Command::new(&py).arg(&script).args(["--seeds", "8", "--out"]).arg(&out).status().expect("run map_vs_pycocotools.py");
    assert!(st.success(), "{} failed", script.display());
    let mut worst = 0.0f64;
    for seed in 0..8 {
        worst = worst.max(check_case(&out.join(format!("case{seed}"))));
    }
    println!("8 cases: worst |temper - pycocotools| = {worst:e}");
    let _ = std::fs::remove_dir_all(&out);
}
