//! Compiles the C test (`tests/c/test_temper.c`) and the example (`examples/classify.c`) with
//! the system C compiler against `libtemper_capi.a`, runs them, and compares every output the
//! C test prints with the Rust runtime's outputs for the same inputs, bit for bit.
//!
//! The model files and the expected output lines are left in `$TEMPER_CAPI_ARTIFACTS` (default
//! `target/tmp/capi-c-test`) for `run_c_test_aarch64.sh`, which runs the same C test for
//! aarch64 under qemu. `CC` overrides the compiler (default `cc`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("TEMPER_CAPI_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("capi-c-test"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The static library cargo built for this test run: in the test executable's `deps` directory
/// (`target/[TRIPLE/]PROFILE/deps/libtemper_capi.a`, where `cargo test` leaves it), or the copy
/// `cargo build` puts next to it, whichever is newest.
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let profile = deps.parent().unwrap();
    let mut candidates = vec![profile.join("libtemper_capi.a")];
    for e in std::fs::read_dir(deps).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("libtemper_capi") && name.ends_with(".a") {
            candidates.push(e.path());
        }
    }
    candidates
        .into_iter()
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("libtemper_capi.a not found next to {}", deps.display()))
}

fn compile(source: &str, out: &Path) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let lib = static_lib();
    let status = Command::new(&cc)
        .args(["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pedantic", "-pthread"])
        .arg(format!("-I{CRATE}/include"))
        .arg(Path::new(CRATE).join(source))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(status.success(), "{cc} failed on {source} (library {})", lib.display());
}

fn out_lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout).lines().filter(|l| l.starts_with("OUT ")).map(str::to_owned).collect()
}

#[test]
fn c_test_passes_and_matches_the_rust_runtime_bit_for_bit() {
    let dir = artifacts();
    let model = common::build_model(true);
    let (pixel_path, plain_path) = (dir.join("model.tmf"), dir.join("plain.tmf"));
    std::fs::write(&pixel_path, &model).unwrap();
    std::fs::write(&plain_path, common::build_model(false)).unwrap();
    let expected = common::expected_lines(&model);
    std::fs::write(dir.join("expected.txt"), expected.join("\n") + "\n").unwrap();

    let exe = dir.join("test_temper");
    compile("tests/c/test_temper.c", &exe);
    // The detected kernel path, and the portable one: the C API gives the same bytes on both.
    for kernels in [None, Some("scalar")] {
        let mut cmd = Command::new(&exe);
        cmd.arg(&pixel_path).arg(&plain_path);
        match kernels {
            Some(k) => cmd.env("TEMPER_KERNELS", k),
            None => cmd.env_remove("TEMPER_KERNELS"),
        };
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "test_temper failed ({kernels:?}):\n{stdout}\n{stderr}");
        assert!(stdout.lines().any(|l| l.starts_with("PASS ")), "{stdout}");
        if let Some(k) = kernels {
            assert!(stdout.contains(&format!("kernels {k}\n")), "{stdout}");
        }
        assert_eq!(out_lines(&out.stdout), expected, "C outputs differ from the Rust runtime's ({kernels:?})");
    }
}

#[test]
fn classify_example_builds_and_runs() {
    let dir = artifacts();
    let model_path = dir.join("classify-model.tmf");
    std::fs::write(&model_path, common::build_model(true)).unwrap();
    let (_, _, pixels) = common::inputs();
    let image = dir.join("image.raw");
    std::fs::write(&image, &pixels).unwrap();
    let exe = dir.join("classify");
    compile("examples/classify.c", &exe);
    let out = Command::new(&exe).arg(&model_path).arg(&image).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // The top class is the argmax of the Rust runtime's logits for the same pixels.
    let expected = common::expected_lines(&common::build_model(true));
    let logits_line = expected.iter().find(|l| l.starts_with("OUT u8 out0 f32")).unwrap();
    let logits: Vec<f32> = logits_line.split(' ').skip(4).map(|h| f32::from_bits(u32::from_str_radix(h, 16).unwrap())).collect();
    let best = (0..logits.len()).fold(0, |b, i| if logits[i] > logits[b] { i } else { b });
    let label = ["cat", "dog", "bird"][best];
    assert!(stdout.contains(&format!("1. class {best} {label} score {:.4}", logits[best])), "{stdout}");
    // A missing file: one line naming it, exit status 1.
    let out = Command::new(&exe).arg(dir.join("missing.tmf")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.tmf"));
}

#[test]
fn header_compiles_as_c89_and_cpp() {
    // C89 (no `//` comments, no C99-only constructs in the header) and C++ (extern "C").
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let include = format!("-I{CRATE}/include");
    let header = Path::new(CRATE).join("include/temper.h");
    let st = Command::new(&cc)
        .args(["-std=c89", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", "-x", "c"])
        .arg(&include)
        .arg(&header)
        .status();
    assert!(st.unwrap().success(), "temper.h is not valid C89");
    let dir = artifacts();
    let src = dir.join("header_check.cpp");
    std::fs::write(
        &src,
        "#include \"temper.h\"\nint main() { temper_model *m = nullptr; return temper_model_load_path(\"x\", &m) == TEMPER_OK; }\n",
    )
    .unwrap();
    match Command::new("c++")
        .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"])
        .arg(&include)
        .arg(&src)
        .status()
    {
        Ok(st) => assert!(st.success(), "temper.h is not valid C++"),
        Err(e) => temper_testkit::skip(temper_testkit::Need::Tools, &format!("no C++ compiler `c++` ({e}): the C++ check of temper.h")),
    }
}
