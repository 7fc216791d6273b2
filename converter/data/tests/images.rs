//! Image decoding, resizing and image-folder tests. PNGs are written with the
//! `png` crate here; JPEGs are committed fixtures made by `fixtures/make_jpeg.sh`.

mod common;

use std::path::Path;

use temper_data::error::ErrorKind;
use temper_data::images::{
    chw_to_hwc, decode_image, decode_jpeg, decode_png, detect_format, list_image_folder, load_image_folder, luma, read_image,
    resize_bilinear_chw, resize_bilinear_hwc, ColorMode, FolderOptions, Image, ImageFormat, Preprocess,
};

fn png_bytes(w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, data: &[u8]) -> Vec<u8> {
    png_bytes_with(w, h, color, depth, data, |_| {})
}

fn png_bytes_with(
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    f: impl FnOnce(&mut png::Encoder<'_, &mut Vec<u8>>),
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        e.set_depth(depth);
        f(&mut e);
        let mut wr = e.write_header().unwrap();
        wr.write_image_data(data).unwrap();
    }
    out
}

/// 2x2 RGB test pattern: red, green / blue, white.
const RGB4: [u8; 12] = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];

#[test]
fn png_8bit_gray_rgb_rgba_grayalpha() {
    let g = png_bytes(3, 1, png::ColorType::Grayscale, png::BitDepth::Eight, &[0, 128, 255]);
    assert_eq!(detect_format(&g), Some(ImageFormat::Png));
    let im = decode_png(&g, "g.png").unwrap();
    assert_eq!((im.width, im.height, im.channels, im.data), (3, 1, 1, vec![0, 128, 255]));

    let rgb = png_bytes(2, 2, png::ColorType::Rgb, png::BitDepth::Eight, &RGB4);
    let im = decode_image(&rgb, "rgb.png").unwrap();
    assert_eq!((im.width, im.height, im.channels), (2, 2, 3));
    assert_eq!(im.data, RGB4.to_vec());

    let rgba = png_bytes(1, 2, png::ColorType::Rgba, png::BitDepth::Eight, &[10, 20, 30, 0, 40, 50, 60, 255]);
    let im = decode_png(&rgba, "rgba.png").unwrap();
    assert_eq!((im.channels, im.data), (3, vec![10, 20, 30, 40, 50, 60]), "alpha is dropped");

    let ga = png_bytes(2, 1, png::ColorType::GrayscaleAlpha, png::BitDepth::Eight, &[7, 0, 9, 255]);
    let im = decode_png(&ga, "ga.png").unwrap();
    assert_eq!((im.channels, im.data), (1, vec![7, 9]));
}

#[test]
fn png_16bit_is_downscaled_with_rounding() {
    let mut d = Vec::new();
    for v in [0u16, 0x7f7f, 0x8080, 0xffff, 257 * 100 + 128] {
        d.extend_from_slice(&v.to_be_bytes());
    }
    let p = png_bytes(5, 1, png::ColorType::Grayscale, png::BitDepth::Sixteen, &d);
    let im = decode_png(&p, "g16.png").unwrap();
    assert_eq!(im.data, vec![0, 127, 128, 255, 100]);

    let mut d = Vec::new();
    for v in [0xffffu16, 0, 0x8080, 1, 2, 3] {
        d.extend_from_slice(&v.to_be_bytes());
    }
    let p = png_bytes(2, 1, png::ColorType::Rgb, png::BitDepth::Sixteen, &d);
    let im = decode_png(&p, "rgb16.png").unwrap();
    assert_eq!((im.channels, im.data), (3, vec![255, 0, 128, 0, 0, 0]));

    let mut d = Vec::new();
    for v in [0x1010u16, 0x2020, 0x3030, 0xffff] {
        d.extend_from_slice(&v.to_be_bytes());
    }
    let p = png_bytes(1, 1, png::ColorType::Rgba, png::BitDepth::Sixteen, &d);
    assert_eq!(decode_png(&p, "rgba16.png").unwrap().data, vec![16, 32, 48]);
}

#[test]
fn png_palette_and_low_bit_gray_are_expanded() {
    let p = png_bytes_with(3, 1, png::ColorType::Indexed, png::BitDepth::Eight, &[0, 1, 2], |e| {
        e.set_palette(vec![255, 0, 0, 0, 255, 0, 1, 2, 3]);
    });
    let im = decode_png(&p, "pal.png").unwrap();
    assert_eq!((im.channels, im.data), (3, vec![255, 0, 0, 0, 255, 0, 1, 2, 3]));
    // 1-bit gray: 0b1010_0000 -> 255, 0, 255, 0 (width 4).
    let p = png_bytes(4, 1, png::ColorType::Grayscale, png::BitDepth::One, &[0b1010_0000]);
    assert_eq!(decode_png(&p, "g1.png").unwrap().data, vec![255, 0, 255, 0]);
    // Palette with tRNS: alpha added by expansion, then dropped.
    let p = png_bytes_with(2, 1, png::ColorType::Indexed, png::BitDepth::Eight, &[1, 0], |e| {
        e.set_palette(vec![9, 8, 7, 6, 5, 4]);
        e.set_trns(vec![0u8, 255]);
    });
    let im = decode_png(&p, "trns.png").unwrap();
    assert_eq!((im.channels, im.data), (3, vec![6, 5, 4, 9, 8, 7]));
}

fn close(a: &[u8], b: &[u8], tol: u8) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.abs_diff(*y) <= tol)
}

/// Checks the 32x16 "bars" fixture: red, green, blue, white bars 8 px wide.
fn check_bars(im: &Image, tol: u8) {
    assert_eq!((im.width, im.height, im.channels), (32, 16, 3));
    let bars: [[u8; 3]; 4] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];
    for y in [0usize, 7, 15] {
        for (b, want) in bars.iter().enumerate() {
            let x = b * 8 + 4;
            let i = (y * 32 + x) * 3;
            assert!(close(&im.data[i..i + 3], want, tol), "bar {b} at y {y}: {:?} vs {want:?}", &im.data[i..i + 3]);
        }
    }
}

#[test]
fn jpeg_baseline_progressive_gray_cmyk() {
    let fx = common::fixtures();
    let base = read_image(&fx.join("bars_baseline.jpg")).unwrap();
    check_bars(&base, 6);
    let prog = read_image(&fx.join("bars_progressive.jpg")).unwrap();
    check_bars(&prog, 6);
    assert!(close(&base.data, &prog.data, 2), "baseline and progressive decode alike");

    let gray = read_image(&fx.join("bars_gray.jpg")).unwrap();
    assert_eq!((gray.width, gray.height, gray.channels), (32, 16, 1));
    for (b, want) in [luma(255, 0, 0), luma(0, 255, 0), luma(0, 0, 255), 255].iter().enumerate() {
        let v = gray.data[8 * 32 + b * 8 + 4];
        assert!(v.abs_diff(*want) <= 6, "gray bar {b}: {v} vs {want}");
    }

    let cmyk = read_image(&fx.join("bars_cmyk.jpg")).unwrap();
    check_bars(&cmyk, 12);
}

#[test]
fn format_detection_ignores_extension() {
    let dir = common::TempDir::new("img-ext");
    // A PNG named .jpg and a JPEG named .png.
    let p = dir.join("really_png.jpg");
    std::fs::write(&p, png_bytes(2, 2, png::ColorType::Rgb, png::BitDepth::Eight, &RGB4)).unwrap();
    assert_eq!(read_image(&p).unwrap().data, RGB4.to_vec());
    let j = dir.join("really_jpeg.png");
    std::fs::copy(common::fixtures().join("bars_baseline.jpg"), &j).unwrap();
    check_bars(&read_image(&j).unwrap(), 6);
}

#[test]
fn hostile_images_never_panic() {
    let e = decode_image(b"GIF89a......", "x.gif").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::BadMagic { .. }), "{e}");
    assert!(e.to_string().contains("x.gif"));
    assert!(decode_image(b"", "empty").is_err());

    let p = png_bytes(5, 3, png::ColorType::Rgb, png::BitDepth::Eight, &[77; 45]);
    assert!(decode_png(&p, "ok").is_ok());
    // Cut anywhere before the end of the IDAT chunk: an error naming the
    // source. (Cutting only the IEND trailer may still decode the full image.)
    let iend = p.windows(4).position(|w| w == b"IEND").unwrap() - 4;
    for k in 0..p.len() {
        let r = decode_image(&p[..k], "cut.png");
        if k < iend - 4 {
            let e = r.unwrap_err();
            assert!(e.to_string().contains("cut.png"), "{e}");
        }
    }
    for i in 8..p.len() {
        let mut b = p.clone();
        b[i] ^= 0x55;
        let _ = decode_image(&b, "flip.png");
    }
    // Absurd dimensions in IHDR (with a correct CRC) are rejected cleanly.
    let mut big = png_bytes(1, 1, png::ColorType::Rgba, png::BitDepth::Sixteen, &[0; 8]);
    big[16..20].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    big[20..24].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&big[12..29]);
    big[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    assert!(decode_png(&big, "big.png").is_err());

    for name in ["bars_baseline.jpg", "bars_progressive.jpg", "bars_cmyk.jpg"] {
        let j = std::fs::read(common::fixtures().join(name)).unwrap();
        for k in 0..j.len() {
            let _ = decode_image(&j[..k], "cut.jpg"); // must not panic
        }
        // Headers cut short are always errors.
        for k in 0..40 {
            assert!(decode_jpeg(&j[..k], "cut.jpg").is_err(), "{name} len {k}");
        }
        for i in 2..j.len() {
            let mut b = j.clone();
            b[i] ^= 0xff;
            let _ = decode_image(&b, "flip.jpg");
        }
    }
    let e = read_image(Path::new("/nonexistent/a.png")).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Io(_)));
}

#[test]
fn resize_matches_bilinear_reference_values() {
    // Upscale 2 -> 4 (half-pixel centers).
    assert_eq!(resize_bilinear_hwc(&[0, 255], 1, 2, 1, 1, 4).unwrap(), vec![0, 64, 191, 255]);
    // Downscale 4 -> 2 with the widened (antialiasing) triangle.
    assert_eq!(resize_bilinear_hwc(&[0, 100, 200, 255], 1, 4, 1, 1, 2).unwrap(), vec![71, 209]);
    // Same along the vertical axis.
    assert_eq!(resize_bilinear_hwc(&[0, 255], 2, 1, 1, 4, 1).unwrap(), vec![0, 64, 191, 255]);
    // Constant images stay constant at any size, channels stay independent.
    let src: Vec<u8> = (0..7 * 5).flat_map(|_| [10u8, 200, 33]).collect();
    for (h, w) in [(1, 1), (3, 2), (14, 10), (28, 28), (5, 7)] {
        let r = resize_bilinear_hwc(&src, 5, 7, 3, h, w).unwrap();
        assert_eq!(r.len(), h * w * 3);
        assert!(r.chunks(3).all(|p| p == [10, 200, 33]), "{h}x{w}");
    }
    // Downscale by 2: triangle of radius 2 source pixels around each center.
    let r = resize_bilinear_hwc(&[0, 0, 100, 100, 0, 0, 100, 100], 2, 4, 1, 1, 2).unwrap();
    // Rows average; columns: (0*.75 + 0*.75 + 100*.25) / 1.75 = 14.3, mirrored 85.7.
    assert_eq!(r, vec![14, 86]);
    // Errors, not panics.
    assert!(resize_bilinear_hwc(&[1, 2, 3], 1, 2, 1, 2, 2).is_err());
    assert!(resize_bilinear_hwc(&[], 0, 0, 1, 2, 2).is_err());
    assert!(resize_bilinear_hwc(&[1], 1, 1, 1, 0, 2).is_err());
    assert!(resize_bilinear_hwc(&[1], 1, 1, 1, usize::MAX, usize::MAX).is_err());
    // CHW variant equals per-plane HWC.
    let chw = [0u8, 255, 10, 20];
    assert_eq!(resize_bilinear_chw(&chw, 2, 1, 2, 1, 4).unwrap(), vec![0, 64, 191, 255, 10, 13, 18, 20]);
    assert!(resize_bilinear_chw(&chw, 3, 1, 2, 1, 4).is_err());
}

#[test]
fn color_conversion_and_chw_layout() {
    let im = Image::new(2, 2, 3, RGB4.to_vec()).unwrap();
    assert_eq!(im.convert(ColorMode::Gray).data, vec![76, 150, 29, 255]);
    assert_eq!(im.convert(ColorMode::Bgr).data, vec![0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 255]);
    let g = Image::new(2, 1, 1, vec![5, 6]).unwrap();
    assert_eq!(g.convert(ColorMode::Rgb).data, vec![5, 5, 5, 6, 6, 6]);
    assert!(Image::new(2, 2, 2, vec![0; 8]).is_err());
    assert!(Image::new(2, 2, 3, vec![0; 11]).is_err());

    let mut out = vec![];
    im.append_chw(&Preprocess { size: None, color: ColorMode::Rgb }, &mut out).unwrap();
    assert_eq!(out, vec![255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255]);
    assert_eq!(chw_to_hwc(&out, 3), RGB4.to_vec());
    let mut out = vec![];
    im.append_chw(&Preprocess { size: None, color: ColorMode::Bgr }, &mut out).unwrap();
    assert_eq!(&out[..4], &[0, 0, 255, 255]);
    let mut out = vec![];
    im.append_chw(&Preprocess { size: Some((4, 4)), color: ColorMode::Gray }, &mut out).unwrap();
    assert_eq!(out.len(), 16);
    assert_eq!(ColorMode::parse("BGR"), Some(ColorMode::Bgr));
    assert_eq!(ColorMode::parse("grey"), Some(ColorMode::Gray));
    assert_eq!(ColorMode::parse("cmyk"), None);
}

fn write_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    let data: Vec<u8> = (0..w * h).flat_map(|_| rgb).collect();
    std::fs::write(path, png_bytes(w, h, png::ColorType::Rgb, png::BitDepth::Eight, &data)).unwrap();
}

fn make_folder(root: &Path) {
    for c in ["dog", "cat", "bird"] {
        std::fs::create_dir_all(root.join(c)).unwrap();
    }
    write_png(&root.join("dog/b.png"), 4, 4, [200, 0, 0]);
    write_png(&root.join("dog/a.PNG"), 4, 4, [100, 0, 0]);
    write_png(&root.join("cat/x.png"), 4, 4, [0, 50, 0]);
    std::fs::create_dir_all(root.join("cat/nested")).unwrap();
    write_png(&root.join("cat/nested/y.png"), 4, 4, [0, 60, 0]);
    write_png(&root.join("bird/z.png"), 4, 4, [0, 0, 90]);
    // Ignored: hidden files, non-image extensions, files at the top level, hidden dirs.
    std::fs::write(root.join("bird/.DS_Store"), b"junk").unwrap();
    std::fs::write(root.join("bird/notes.txt"), b"junk").unwrap();
    std::fs::write(root.join("README.md"), b"junk").unwrap();
    std::fs::create_dir_all(root.join(".cache")).unwrap();
}

#[test]
fn image_folder_classes_order_and_content() {
    let dir = common::TempDir::new("folder");
    make_folder(dir.path());
    let l = list_image_folder(dir.path()).unwrap();
    assert_eq!(l.class_names, vec!["bird", "cat", "dog"]);
    let names: Vec<String> = l.files.iter().map(|(p, c)| format!("{}:{c}", p.strip_prefix(dir.path()).unwrap().display())).collect();
    assert_eq!(names, vec!["bird/z.png:0", "cat/nested/y.png:1", "cat/x.png:1", "dog/a.PNG:2", "dog/b.png:2"]);

    let f = load_image_folder(dir.path(), &FolderOptions::default()).unwrap();
    assert_eq!(f.shape, [5, 3, 4, 4]);
    assert_eq!(f.labels, vec![0, 1, 1, 2, 2]);
    // Image 1 (cat/nested/y.png) is (0, 60, 0): planes R=0, G=60, B=0.
    let img1 = &f.data[48..96];
    assert!(img1[..16].iter().all(|&v| v == 0) && img1[16..32].iter().all(|&v| v == 60));

    let g = load_image_folder(dir.path(), &FolderOptions { size: Some((2, 3)), color: Some(ColorMode::Gray) }).unwrap();
    assert_eq!(g.shape, [5, 1, 2, 3]);
    assert!(g.data[..6].iter().all(|&v| v == luma(0, 0, 90)));
    let b = load_image_folder(dir.path(), &FolderOptions { size: None, color: Some(ColorMode::Bgr) }).unwrap();
    assert_eq!(&b.data[..16], &[90; 16], "BGR: blue plane first");
}

#[test]
fn image_folder_errors() {
    let dir = common::TempDir::new("folder-err");
    make_folder(dir.path());
    // Mixed sizes without a target size.
    write_png(&dir.join("dog/c.png"), 5, 4, [1, 1, 1]);
    let e = load_image_folder(dir.path(), &FolderOptions::default()).unwrap_err();
    assert!(e.to_string().contains("c.png") && e.to_string().contains("target size"), "{e}");
    let ok = load_image_folder(dir.path(), &FolderOptions { size: Some((4, 4)), color: None }).unwrap();
    assert_eq!(ok.shape, [6, 3, 4, 4]);
    // Corrupt image names the file.
    std::fs::write(dir.join("cat/broken.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let e = load_image_folder(dir.path(), &FolderOptions { size: Some((4, 4)), color: None }).unwrap_err();
    assert!(e.to_string().contains("broken.png"), "{e}");
    // Empty class folder.
    let d2 = common::TempDir::new("folder-empty");
    std::fs::create_dir_all(d2.join("a")).unwrap();
    std::fs::create_dir_all(d2.join("b")).unwrap();
    write_png(&d2.join("a/1.png"), 2, 2, [0, 0, 0]);
    let e = load_image_folder(d2.path(), &FolderOptions::default()).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Empty(_)), "{e}");
    assert!(e.to_string().contains('b'));
    // No class folders at all / missing root.
    let d3 = common::TempDir::new("folder-none");
    assert!(matches!(load_image_folder(d3.path(), &FolderOptions::default()).unwrap_err().kind, ErrorKind::Empty(_)));
    assert!(matches!(load_image_folder(&d3.join("missing"), &FolderOptions::default()).unwrap_err().kind, ErrorKind::Io(_)));
}

#[test]
fn image_folder_gray_only_infers_one_channel_and_jpeg_works() {
    let dir = common::TempDir::new("folder-gray");
    std::fs::create_dir_all(dir.join("0")).unwrap();
    std::fs::create_dir_all(dir.join("1")).unwrap();
    std::fs::write(dir.join("0/a.png"), png_bytes(32, 16, png::ColorType::Grayscale, png::BitDepth::Eight, &[9; 512])).unwrap();
    std::fs::copy(common::fixtures().join("bars_gray.jpg"), dir.join("1/b.jpeg")).unwrap();
    let f = load_image_folder(dir.path(), &FolderOptions::default()).unwrap();
    assert_eq!(f.shape, [2, 1, 16, 32]);
    // Adding a color JPEG makes the inferred mode RGB.
    std::fs::copy(common::fixtures().join("bars_progressive.jpg"), dir.join("1/c.JPG")).unwrap();
    let f = load_image_folder(dir.path(), &FolderOptions::default()).unwrap();
    assert_eq!(f.shape, [3, 3, 16, 32]);
    assert!(f.data[..512 * 3].iter().all(|&v| v == 9), "gray replicated to RGB");
}
