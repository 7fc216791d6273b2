//! Hand-checkable cases for the COCO evaluator.

use super::map::*;

fn gt(image: usize, class: usize, bbox: [f64; 4]) -> GroundTruth {
    GroundTruth { image, class, bbox, area: bbox[2] * bbox[3], iscrowd: false }
}

fn crowd(image: usize, class: usize, bbox: [f64; 4]) -> GroundTruth {
    GroundTruth { iscrowd: true, ..gt(image, class, bbox) }
}

fn dt(image: usize, class: usize, bbox: [f64; 4], score: f64) -> Detection {
    Detection { image, class, bbox, score }
}

/// Equal up to the `eps` pycocotools adds to `tp + fp` (precision 1 is `1 - 2^-52` there too).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn perfect_detection_scores_one_in_its_area_range_only() {
    let e = evaluate(1, 1, &[gt(0, 0, [5.0, 5.0, 10.0, 10.0])], &[dt(0, 0, [5.0, 5.0, 10.0, 10.0], 0.9)]).unwrap();
    // AP, AP50, AP75, small = 1; medium and large have no ground truth: -1; every AR = 1 except
    // medium/large.
    let want = [1.0, 1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0];
    assert!(e.stats.iter().zip(want).all(|(&a, b)| close(a, b)), "{:?}", e.stats);
    assert!(close(e.per_class_ap()[0], 1.0));
}

#[test]
fn partial_overlap_counts_only_at_thresholds_it_reaches() {
    // IoU = 72.5 / 100 = 0.725: a match at 0.50, 0.55, 0.60, 0.65, 0.70 (5 of 10 thresholds).
    let e = evaluate(1, 1, &[gt(0, 0, [0.0, 0.0, 10.0, 10.0])], &[dt(0, 0, [0.0, 0.0, 10.0, 7.25], 0.5)]).unwrap();
    assert!(close(e.stats[0], 0.5), "{:?}", e.stats);
    assert!(close(e.stats[1], 1.0));
    assert_eq!(e.stats[2], 0.0);
    assert!(close(e.stats[8], 0.5));
}

#[test]
fn false_positive_between_two_hits_gives_interpolated_precision() {
    // Scores 0.9 hit, 0.8 miss, 0.7 hit; 2 ground truths. Recall 0.5, 0.5, 1; precision 1, 1/2,
    // 2/3 -> interpolated 1, 2/3, 2/3. Recall thresholds 0..=0.50 (51 of them) read 1, the 50
    // above read 2/3: AP = (51 + 50 * 2/3) / 101 at every IoU threshold.
    let gts = [gt(0, 0, [0.0, 0.0, 20.0, 20.0]), gt(0, 0, [50.0, 50.0, 20.0, 20.0])];
    let dts = [dt(0, 0, [0.0, 0.0, 20.0, 20.0], 0.9), dt(0, 0, [100.0, 100.0, 20.0, 20.0], 0.8), dt(0, 0, [50.0, 50.0, 20.0, 20.0], 0.7)];
    let e = evaluate(1, 1, &gts, &dts).unwrap();
    let want = (51.0 + 50.0 * 2.0 / 3.0) / 101.0;
    assert!(close(e.stats[0], want), "{} vs {want}", e.stats[0]);
    assert!(close(e.stats[1], want));
    assert_eq!(e.stats[6], 0.5, "AR@1: the best detection finds one of two");
    assert!(close(e.stats[7], 1.0));
}

#[test]
fn detections_on_a_crowd_are_ignored_and_a_crowd_matches_many() {
    // A regular object found, plus two detections inside a crowd region (IoU over the detection's
    // own area = 1): neither is a false positive. Without the crowd flag they would be.
    let regular = gt(0, 0, [0.0, 0.0, 10.0, 10.0]);
    let region = [40.0, 40.0, 60.0, 60.0];
    let dts = [dt(0, 0, [45.0, 45.0, 10.0, 10.0], 0.95), dt(0, 0, [70.0, 70.0, 10.0, 10.0], 0.9), dt(0, 0, [0.0, 0.0, 10.0, 10.0], 0.5)];
    let e = evaluate(1, 1, &[regular, crowd(0, 0, region)], &dts).unwrap();
    assert!(close(e.stats[0], 1.0));
    let e = evaluate(1, 1, &[regular, gt(0, 0, region)], &dts).unwrap();
    assert!(e.stats[0] < 0.6, "two higher-scored false positives: {}", e.stats[0]);
}

#[test]
fn only_crowd_ground_truth_leaves_the_class_out() {
    let e =
        evaluate(1, 2, &[gt(0, 0, [0.0, 0.0, 10.0, 10.0]), crowd(0, 1, [0.0, 0.0, 50.0, 50.0])], &[dt(0, 0, [0.0, 0.0, 10.0, 10.0], 0.3)])
            .unwrap();
    let ap = e.per_class_ap();
    assert!(close(ap[0], 1.0) && ap[1] == -1.0, "{ap:?}");
    assert!(close(e.stats[0], 1.0), "class 1 (-1) is left out of the mean");
}

#[test]
fn missing_class_and_missed_images_lower_ap() {
    // Two images with one object each; only the first is found: recall 1/2, AP = 51/101.
    let gts = [gt(0, 0, [0.0, 0.0, 40.0, 40.0]), gt(1, 0, [0.0, 0.0, 40.0, 40.0])];
    let e = evaluate(2, 1, &gts, &[dt(0, 0, [0.0, 0.0, 40.0, 40.0], 0.9)]).unwrap();
    assert!(close(e.stats[0], 51.0 / 101.0));
    assert_eq!(e.stats[4], e.stats[0], "40x40 = 1600 is medium");
    assert_eq!(e.stats[3], -1.0);
}

#[test]
fn equal_scores_keep_input_order() {
    // Same score: the one listed first ranks first (numpy's stable mergesort).
    let g = [gt(0, 0, [0.0, 0.0, 10.0, 10.0])];
    let hit = dt(0, 0, [0.0, 0.0, 10.0, 10.0], 0.5);
    let miss = dt(0, 0, [30.0, 30.0, 10.0, 10.0], 0.5);
    assert!(close(evaluate(1, 1, &g, &[hit, miss]).unwrap().stats[0], 1.0));
    let e = evaluate(1, 1, &g, &[miss, hit]).unwrap();
    assert!(close(e.stats[0], 0.5), "precision 1/2 at recall 1: {}", e.stats[0]);
}

#[test]
fn max_dets_cuts_per_image() {
    // 101 detections; the only hit has the lowest score and is cut by maxDets=100.
    let g = [gt(0, 0, [0.0, 0.0, 10.0, 10.0])];
    let mut dts: Vec<Detection> = (0..100).map(|i| dt(0, 0, [100.0 + i as f64, 100.0, 10.0, 10.0], 0.9)).collect();
    dts.push(dt(0, 0, [0.0, 0.0, 10.0, 10.0], 0.1));
    let e = evaluate(1, 1, &g, &dts).unwrap();
    assert_eq!(e.stats[0], 0.0);
    assert_eq!(e.stats[8], 0.0);
    dts.remove(0);
    let e = evaluate(1, 1, &g, &dts).unwrap();
    assert!(close(e.stats[8], 1.0));
    assert!(e.stats[0] > 0.0 && e.stats[0] < 0.02);
}

#[test]
fn iou_thresholds_are_numpy_linspace_values() {
    let e = evaluate(1, 1, &[gt(0, 0, [0.0, 0.0, 1.0, 1.0])], &[]).unwrap();
    assert_eq!(e.iou_thrs[5], 0.75);
    assert_eq!(e.iou_thrs[8], 0.8999999999999999);
    assert_eq!(e.rec_thrs[50], 0.5);
    assert_eq!(e.stats[0], 0.0, "no detection: AP 0, not -1");
}

#[test]
fn unmatched_detection_outside_area_range_is_ignored_there() {
    // A small object found; a large false positive. In 'small' the large FP is ignored (AP 1);
    // in 'all' it ranks first and costs precision.
    let e = evaluate(
        1,
        1,
        &[gt(0, 0, [0.0, 0.0, 10.0, 10.0])],
        &[dt(0, 0, [100.0, 100.0, 200.0, 200.0], 0.9), dt(0, 0, [0.0, 0.0, 10.0, 10.0], 0.5)],
    )
    .unwrap();
    assert!(close(e.stats[3], 1.0));
    assert!(close(e.stats[0], 0.5));
}

#[test]
fn bad_input_is_an_error_naming_the_entry() {
    let err = evaluate(1, 1, &[gt(0, 3, [0.0, 0.0, 1.0, 1.0])], &[]).unwrap_err();
    assert!(err.to_string().contains("ground truth 0: class 3 out of range"), "{err}");
    let err = evaluate(1, 1, &[], &[dt(2, 0, [0.0, 0.0, 1.0, 1.0], 0.5)]).unwrap_err();
    assert!(err.to_string().contains("detection 0: image index 2"), "{err}");
    let err = evaluate(1, 1, &[], &[dt(0, 0, [0.0, 0.0, 1.0, 1.0], f64::NAN)]).unwrap_err();
    assert!(err.to_string().contains("score NaN"), "{err}");
}
