//! The controller's logic on the host, with mock pins and a mock SPI sensor.

mod common;

use common::*;
use temper_controller::*;
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{Model, RunError, Session};

type Ctl<'m, 'a> = Controller<'m, 'a, SpiSensor<SensorSpi, ReadyPin>, RejectPin>;

/// A controller over the embedded model on a fresh bench (level-triggered data-ready).
fn setup<'m, 'a>(model: &'m Model<'m>, arena: &'a mut [u8], frame: &'a mut [u8], trigger: Trigger) -> (Ctl<'m, 'a>, Shared) {
    let b = bench();
    let sensor = SpiSensor::new(SensorSpi(b.clone()), ReadyPin(b.clone()), trigger);
    let class = defect_class(model, "defect").unwrap();
    let c = Controller::new(model, arena, frame, sensor, RejectPin(b.clone()), class).unwrap();
    (c, b)
}

/// Queue one frame behind a high data-ready line and poll once.
fn inspect(c: &mut Ctl<'_, '_>, b: &Shared, frame: Vec<u8>) -> Inspection {
    b.borrow_mut().ready.push_back(true);
    b.borrow_mut().frames.push_back(frame);
    c.poll().unwrap().expect("a frame was ready")
}

#[test]
fn clean_frames_pass_and_spots_are_rejected() {
    let model = temper_controller::model().unwrap();
    let (mut arena, mut frame) = ([0u8; ARENA_SIZE], [0u8; FRAME_LEN]);
    let (mut c, b) = setup(&model, &mut arena, &mut frame, Trigger::Level);
    assert_eq!(b.borrow().reject, [false], "setup drives the reject pin low");

    for level in [0u8, 37, 128, 200, 255] {
        let r = inspect(&mut c, &b, uniform(level));
        assert!(!r.defect && r.class == 0, "uniform {level}: {r:?}");
    }
    // A smooth horizontal gradient has no isolated spot either.
    let gradient: Vec<u8> = (0..64).map(|i| (i % 8 * 30) as u8).collect();
    assert!(!inspect(&mut c, &b, gradient).defect);
    assert_eq!(b.borrow().reject, [false; 7]);

    // Bright and dark spots anywhere in the inner 6×6, on dark, mid and bright backgrounds.
    let mut n = 0;
    for (base, spot) in [(40u8, 90u8), (128, 160), (128, 96), (220, 170), (0, 255), (255, 0)] {
        for row in 1..7 {
            for col in 1..7 {
                let r = inspect(&mut c, &b, with_spot(uniform(base), row, col, spot));
                assert!(r.defect && r.class == 1, "spot {spot} on {base} at ({row}, {col}): {r:?}");
                n += 1;
            }
        }
    }
    assert_eq!(c.stats(), Stats { inferences: 6 + n, rejects: n });
    assert!(b.borrow().reject[7..].iter().all(|&l| l));
    // Every transaction was the read command followed by the frame.
    assert!(b.borrow().commands.iter().all(|w| w == &[READ_FRAME]));
    assert_eq!(b.borrow().commands.len() as u32, c.stats().inferences);
}

#[test]
fn the_reject_pin_follows_each_decision() {
    let model = temper_controller::model().unwrap();
    let (mut arena, mut frame) = ([0u8; ARENA_SIZE], [0u8; FRAME_LEN]);
    let (mut c, b) = setup(&model, &mut arena, &mut frame, Trigger::Level);
    let spot = with_spot(uniform(100), 3, 4, 200);
    let decisions: Vec<bool> = [uniform(100), spot.clone(), spot, uniform(100), with_spot(uniform(100), 5, 2, 10)]
        .into_iter()
        .map(|f| inspect(&mut c, &b, f).defect)
        .collect();
    assert_eq!(decisions, [false, true, true, false, true]);
    assert_eq!(b.borrow().reject, [false, false, true, true, false, true]);
    assert_eq!(c.stats(), Stats { inferences: 5, rejects: 3 });
    assert_eq!(c.frame(), with_spot(uniform(100), 5, 2, 10).as_slice());
}

#[test]
fn the_threshold_is_about_twenty_grey_levels() {
    let model = temper_controller::model().unwrap();
    let (mut arena, mut frame) = ([0u8; ARENA_SIZE], [0u8; FRAME_LEN]);
    let (mut c, b) = setup(&model, &mut arena, &mut frame, Trigger::Level);
    for contrast in 0u8..=60 {
        let r = inspect(&mut c, &b, with_spot(uniform(100), 4, 4, 100 + contrast));
        // Real threshold: 1.25·s > 0.1, s = contrast / 255 → contrast > 20.4 (±1 of rounding).
        if contrast <= 19 {
            assert!(!r.defect, "contrast {contrast}");
        }
        if contrast >= 22 {
            assert!(r.defect, "contrast {contrast}");
        }
    }
}

#[test]
fn no_frame_no_work() {
    let model = temper_controller::model().unwrap();
    let (mut arena, mut frame) = ([0u8; ARENA_SIZE], [0u8; FRAME_LEN]);
    let (mut c, b) = setup(&model, &mut arena, &mut frame, Trigger::Level);
    for _ in 0..5 {
        assert_eq!(c.poll(), Ok(None));
    }
    assert_eq!(c.stats(), Stats::default());
    assert!(b.borrow().commands.is_empty());
    assert_eq!(b.borrow().reject, [false]);
}

#[test]
fn rising_edge_trigger_reads_once_per_edge() {
    let model = temper_controller::model().unwrap();
    let (mut arena, mut frame) = ([0u8; ARENA_SIZE], [0u8; FRAME_LEN]);
    let (mut c, b) = setup(&model, &mut arena, &mut frame, Trigger::RisingEdge);
    // High at power-up is not an edge; then low → high (frame), held high (no frame), low,
    // high again (frame).
    b.borrow_mut().ready.extend([true, false, true, true, true, false, true]);
    b.borrow_mut().frames.extend([uniform(9), with_spot(uniform(9), 2, 2, 99)]);
    let results: Vec<Option<bool>> = (0..7).map(|_| c.poll().unwrap().map(|r| r.defect)).collect();
    assert_eq!(results, [None, None, Some(false), None, None, None, Some(true)]);
    assert_eq!(c.stats(), Stats { inferences: 2, rejects: 1 });
    assert!(b.borrow().frames.is_empty());
}

#[test]
fn errors_leave_counters_and_pin_alone() {
    let model = temper_controller::model().unwrap();
    let (mut arena, mut frame) = ([0u8; ARENA_SIZE], [0u8; FRAME_LEN]);
    let (mut c, b) = setup(&model, &mut arena, &mut frame, Trigger::Level);
    inspect(&mut c, &b, with_spot(uniform(50), 3, 3, 250));
    let before = (c.stats(), b.borrow().reject.clone());

    b.borrow_mut().fail_ready = true;
    assert_eq!(c.poll(), Err(Error::Sensor(SensorError::Ready(MockError))));
    b.borrow_mut().ready.push_back(true);
    b.borrow_mut().fail_spi = true;
    assert_eq!(c.poll(), Err(Error::Sensor(SensorError::Spi(MockError))));
    assert_eq!((c.stats(), b.borrow().reject.clone()), before);

    // A failing pin write reports the error; the frame is not counted.
    b.borrow_mut().fail_reject = true;
    b.borrow_mut().ready.push_back(true);
    b.borrow_mut().frames.push_back(uniform(50));
    assert_eq!(c.poll(), Err(Error::Pin(MockError)));
    assert_eq!(c.stats(), before.0);
    // And the controller carries on.
    assert!(!inspect(&mut c, &b, uniform(50)).defect);
    assert_eq!(c.stats(), Stats { inferences: 2, rejects: 1 });
    let (sensor, _pin) = c.release();
    let (_spi, _ready) = sensor.release();
}

#[test]
fn decisions_match_a_direct_run_of_the_runtime() {
    let model = temper_controller::model().unwrap();
    let (mut arena, mut frame) = ([0u8; ARENA_SIZE], [0u8; FRAME_LEN]);
    let (mut c, b) = setup(&model, &mut arena, &mut frame, Trigger::Level);
    let mut arena2 = vec![0u8; model.arena_size()];
    let mut s = Session::new(&model, &mut arena2).unwrap();
    let mut rng = 0x2545F4914F6CDD1Du64;
    for i in 0..300 {
        // Noisy frames of growing amplitude: some pass, some are rejected.
        let amp = (i % 30 + 1) as u64;
        let f: Vec<u8> = (0..64)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (100 + rng % amp) as u8
            })
            .collect();
        s.set_input_u8(0, &f).unwrap();
        s.run().unwrap();
        let scores = s.output_i8(0).unwrap();
        let expect = scores[1] > scores[0];
        let r = inspect(&mut c, &b, f);
        assert_eq!(r.defect, expect, "frame {i}");
        assert_eq!(r.score, scores[r.class]);
    }
    let stats = c.stats();
    assert!(stats.rejects > 10 && stats.rejects < 290, "{stats:?}");
}

#[test]
fn setup_checks_the_model_and_the_buffers() {
    let model = temper_controller::model().unwrap();
    let b = bench();
    let sensor = || SpiSensor::new(SensorSpi(b.clone()), ReadyPin(b.clone()), Trigger::Level);
    let (mut arena, mut frame) = ([0u8; ARENA_SIZE], [0u8; FRAME_LEN]);
    let mut short = [0u8; FRAME_LEN - 1];
    let e = Controller::new(&model, &mut arena, &mut short, sensor(), RejectPin(b.clone()), 1).unwrap_err();
    assert_eq!(e, SetupError::FrameLength { expected: FRAME_LEN, given: FRAME_LEN - 1 });
    let e = Controller::new(&model, &mut arena, &mut frame, sensor(), RejectPin(b.clone()), 2).unwrap_err();
    assert_eq!(e, SetupError::DefectClass { class: 2, classes: 2 });
    let mut small = [0u8; ARENA_SIZE - 1];
    let e = Controller::new(&model, &mut small, &mut frame, sensor(), RejectPin(b.clone()), 1).unwrap_err();
    assert_eq!(e, SetupError::Run(RunError::ArenaTooSmall { needed: ARENA_SIZE, given: ARENA_SIZE - 1 }));
    b.borrow_mut().fail_reject = true;
    let e = Controller::new(&model, &mut arena, &mut frame, sensor(), RejectPin(b.clone()), 1).unwrap_err();
    assert_eq!(e, SetupError::Pin(MockError));

    // A model without pixel normalization cannot take the sensor's raw frames.
    let plain = AlignedBuf::from_bytes(&defect_model(false));
    let plain = Model::from_bytes(plain.as_bytes()).unwrap();
    let e = Controller::new(&plain, &mut arena, &mut frame, sensor(), RejectPin(b.clone()), 1).unwrap_err();
    assert_eq!(e, SetupError::NotPixelInput);
    assert_eq!(defect_class(&plain, "defect"), Some(1));
    assert_eq!(defect_class(&plain, "scratch"), None);
}
