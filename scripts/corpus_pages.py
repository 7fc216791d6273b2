#!/usr/bin/env python3
"""Render the corpus's text images (run by scripts/corpus.sh in its venv; needs Pillow only).

Pages for the PP-OCR text detector: dark text lines (English words, digits, and Chinese when a
CJK font is present) in several fonts and sizes on a light, slightly textured background
(a brightness gradient, paper grain and faint blotches), preprocessed as PP-OCR's detector
expects (RGB / 255, ImageNet mean/std, NCHW float32).  Lines for the PP-OCR text-direction
classifier: one line each, half of them rotated by 180 degrees, resized to 48x192 keeping the
aspect ratio and padded, normalized as (x / 255 - 0.5) / 0.5.

Writes (all float32 NPY, deterministic for a given Pillow and fonts):
  det_calib.npy  [16, 3, S, S]   calibration pages        det_eval.npy  [8, 3, S, S]   evaluation pages
  cls_calib.npy  [64, 3, 48, 192] calibration lines       cls_eval.npy  [500, 3, 48, 192] evaluation lines
  cls_eval_flip.npy [500] int64   1 where the line was rotated by 180 degrees

usage: corpus_pages.py OUT_DIR [--size S]   (S = page side, default 320)
"""
import os
import random
import struct
import sys

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = ["/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/wqy"]
LATIN = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
         "DejaVuSansMono.ttf", "DejaVuSansCondensed.ttf", "DejaVuSerif-Italic.ttf"]
CJK = ["wqy-microhei.ttc"]
WORDS = ("invoice total amount date order number batch serial part quantity unit price weight "
         "line station operator shift temperature pressure voltage current speed motor pump valve "
         "sensor alarm reset status ready error warning check passed failed lot code model customer "
         "address phone street city delivery shipped received signature page of report").split()
HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处府"
DIGITS = "0123456789"


def find_fonts(names):
    out = []
    for n in names:
        for d in FONT_DIRS:
            p = os.path.join(d, n)
            if os.path.exists(p):
                out.append(p)
                break
    return out


def text_line(rng, cjk):
    parts = []
    for _ in range(rng.randint(2, 6)):
        r = rng.random()
        if cjk and r < 0.35:
            parts.append("".join(rng.choice(HANZI) for _ in range(rng.randint(2, 6))))
        elif r < 0.55:
            parts.append("".join(rng.choice(DIGITS) for _ in range(rng.randint(2, 8))) + rng.choice(["", ".00", "-", "/", "%", " kg"]))
        else:
            w = rng.choice(WORDS)
            parts.append(w.capitalize() if rng.random() < 0.3 else (w.upper() if rng.random() < 0.1 else w))
    return " ".join(parts) + rng.choice(["", ":", ".", ","])


def background(rng, w, h):
    base = rng.randint(200, 245)
    img = Image.new("L", (w, h), base)
    # brightness gradient
    grad = Image.linear_gradient("L").resize((w, h)).rotate(rng.choice([0, 90, 180, 270]))
    img = Image.blend(img, grad.point(lambda v: base - 15 + v * 30 // 255), 0.5)
    # faint blotches
    d = ImageDraw.Draw(img)
    for _ in range(rng.randint(2, 6)):
        x, y, r = rng.randint(0, w), rng.randint(0, h), rng.randint(10, w // 3)
        d.ellipse([x - r, y - r, x + r, y + r], fill=max(0, base - rng.randint(5, 20)))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(6, 14)))
    # paper grain
    noise = Image.effect_noise((w, h), rng.uniform(4, 10))
    img = Image.blend(img, noise, 0.08)
    tint = [rng.randint(-8, 8) for _ in range(3)]
    return Image.merge("RGB", [img.point(lambda v, t=t: max(0, min(255, v + t))) for t in tint])


def page(rng, size, fonts, cjk_fonts):
    img = background(rng, size, size)
    d = ImageDraw.Draw(img)
    y = rng.randint(4, 20)
    while True:
        use_cjk = bool(cjk_fonts) and rng.random() < 0.4
        font = ImageFont.truetype(rng.choice(cjk_fonts if use_cjk else fonts), rng.randint(11, 30))
        s = text_line(rng, use_cjk)
        x0 = rng.randint(4, size // 3)
        box = d.textbbox((x0, y), s, font=font)
        if box[3] > size - 4:
            break
        ink = rng.randint(0, 70)
        d.text((x0, y), s, font=font, fill=(ink + rng.randint(0, 20), ink, ink + rng.randint(0, 30)))
        y = box[3] + rng.randint(4, 24)
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.6)))


def line(rng, fonts, cjk_fonts):
    use_cjk = bool(cjk_fonts) and rng.random() < 0.5
    font = ImageFont.truetype(rng.choice(cjk_fonts if use_cjk else fonts), rng.randint(20, 40))
    s = text_line(rng, use_cjk)
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), s, font=font)
    m = rng.randint(2, 8)
    w, h = box[2] - box[0] + 2 * m, box[3] - box[1] + 2 * m
    img = background(rng, w, h)
    ink = rng.randint(0, 70)
    ImageDraw.Draw(img).text((m - box[0], m - box[1]), s, font=font, fill=(ink, ink, ink))
    return img


def det_array(imgs):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = []
    for im in imgs:
        w, h = im.size
        px = im.tobytes()
        for c in range(3):
            out.extend((px[i * 3 + c] / 255.0 - mean[c]) / std[c] for i in range(w * h))
    return out


def cls_array(imgs):
    out = []
    for im in imgs:
        w, h = im.size
        nw = min(192, max(1, round(w * 48 / h)))
        im = im.resize((nw, 48), Image.BILINEAR)
        px = im.tobytes()
        for c in range(3):
            for y in range(48):
                for x in range(192):
                    out.append((px[(y * nw + x) * 3 + c] / 255.0 - 0.5) / 0.5 if x < nw else 0.0)
    return out


def save_npy(path, shape, data, dtype="<f4"):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (dtype, "".join(f"{d}, " for d in shape))
    header += " " * ((64 - (len(header) + 11) % 64) % 64) + "\n"
    fmt = "<%d%s" % (len(data), "f" if dtype == "<f4" else "q")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        f.write(struct.pack(fmt, *data))
    os.replace(tmp, path)


def main():
    out = sys.argv[1]
    size = int(sys.argv[sys.argv.index("--size") + 1]) if "--size" in sys.argv else 320
    fonts, cjk = find_fonts(LATIN), find_fonts(CJK)
    if not fonts:
        sys.exit(f"no DejaVu fonts under {FONT_DIRS} (apt-get install fonts-dejavu-core)")
    if not cjk:
        print("warning: no CJK font (fonts-wqy-microhei): Latin text only", file=sys.stderr)
    os.makedirs(out, exist_ok=True)
    for name, n, seed in [("det_calib", 16, 1), ("det_eval", 8, 2)]:
        rng = random.Random(seed)
        save_npy(os.path.join(out, name + ".npy"), [n, 3, size, size], det_array([page(rng, size, fonts, cjk) for _ in range(n)]))
    for name, n, seed in [("cls_calib", 64, 3), ("cls_eval", 500, 4)]:
        rng = random.Random(seed)
        imgs, flips = [], []
        for _ in range(n):
            im = line(rng, fonts, cjk)
            f = rng.random() < 0.5
            imgs.append(im.rotate(180) if f else im)
            flips.append(int(f))
        save_npy(os.path.join(out, name + ".npy"), [n, 3, 48, 192], cls_array(imgs))
        if name == "cls_eval":
            save_npy(os.path.join(out, "cls_eval_flip.npy"), [n], flips, "<i8")
    print(f"rendered pages ({size}x{size}) and lines into {out} (fonts: {len(fonts)} Latin, {len(cjk)} CJK)")


if __name__ == "__main__":
    main()
