//! The self-test sequence on the host: its transcript is what the firmware must print under QEMU
//! (`run_firmware_qemu.sh` compares them), and it is checked for consistency here.
//!
//! The transcript is written to `$TEMPER_CONTROLLER_ARTIFACTS/host.txt` (default
//! `target/tmp/controller-selftest/host.txt`).

use std::path::PathBuf;
use temper_controller::{selftest, ARENA_SIZE, FRAME_LEN};

#[test]
fn selftest_transcript() {
    let model = temper_controller::model().unwrap();
    let (mut arena, mut frame) = (vec![0u8; ARENA_SIZE], vec![0u8; FRAME_LEN]);
    let mut out = String::new();
    assert_eq!(selftest::run(&model, &mut arena, &mut frame, &mut out), Ok(true));

    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len() as u32, selftest::FRAMES + 1, "{out}");
    let defects = lines.iter().filter(|l| l.contains(" defect 1 ")).count();
    let stats = lines.last().unwrap();
    assert!(stats.starts_with(&format!("stats inferences {} rejects {defects} ", selftest::FRAMES)), "{stats}");
    // With the checked-in spot detector: a noise-free frame (index ≡ 0 mod 4) is flagged when it
    // carries a spot of more than ~20 grey levels in the inner 6×6, and passes without one. A
    // build with another model (`TEMPER_CONTROLLER_MODEL`, for the QEMU transcript) cannot be
    // held to that: it says so, and fails under CI / TEMPER_REQUIRE=data.
    let checked_in = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/model/defect8x8.tmf")).unwrap();
    if model.bytes() != &checked_in[..] {
        temper_testkit::skip(
            temper_testkit::Need::Data,
            "spot-detector checks: the embedded model is not the checked-in model/defect8x8.tmf (TEMPER_CONTROLLER_MODEL)",
        );
    } else {
        assert!(defects > 0 && defects < selftest::FRAMES as usize, "{out}");
        let mut f = [0u8; 64];
        for i in (0..selftest::FRAMES).filter(|i| i % 4 == 0) {
            selftest::frame(i, &mut f);
            let base = if f[0] == f[1] { f[0] } else { f[2] };
            let contrast = (1..7).flat_map(|r| (1..7).map(move |c| r * 8 + c)).map(|p| f[p].abs_diff(base)).max().unwrap();
            let defect = lines[i as usize].contains(" defect 1 ");
            match contrast {
                0 => assert!(!defect, "frame {i}: {}", lines[i as usize]),
                22.. => assert!(defect, "frame {i}: {}", lines[i as usize]),
                _ => {}
            }
        }
    }

    let dir = std::env::var_os("TEMPER_CONTROLLER_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("controller-selftest"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("host.txt"), &out).unwrap();
}
