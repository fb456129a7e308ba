//! `predict` on pictures a person has: the same answer as the evaluation
//! for a test image saved as PNG, the same class for it photographed dark
//! on white and enlarged, and a clear message for what is not a picture.

use image::{DynamicImage, GrayImage, ImageOutputFormat, Luma, RgbImage};
use std::fs;
use std::io::Cursor;
use std::path::Path;

use crate::common::*;

fn save(img: &DynamicImage, path: &Path, f: ImageOutputFormat) {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, f).unwrap();
    fs::write(path, out.into_inner()).unwrap();
}

/// (source index, label, the ten probabilities) of a predictions.csv row.
fn evaluated(t: &Project, stage: &str, row: usize) -> (usize, usize, Vec<f64>) {
    let csv = t.read(&format!("outputs/{stage}/predictions.csv"));
    let line = csv.lines().nth(row + 1).unwrap();
    let f: Vec<&str> = line.split(',').collect();
    (
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[4..].iter().map(|x| x.parse().unwrap()).collect(),
    )
}

#[test]
fn pictures_are_classified_like_the_test_set_and_bad_files_are_named() {
    let t = tiny_project(|s| s);
    t.run(&["predict", "x.png"])
        .exits(2)
        .has("no comparison to pick the best model from yet");
    t.run(&["predict", "--model", "train@main", "x.png"])
        .exits(2)
        .has("train@main has no trained model yet; run `fmnist-pipe run train@main` first");
    t.run(&["run"]).ok();
    fs::create_dir_all(t.path("empty")).unwrap();
    t.run(&["predict", "empty"])
        .exits(2)
        .has("empty: no .png, .jpg or .jpeg files in this directory");

    // Test image 0 as a 28×28 grey PNG, and as a 140×140 colour JPEG,
    // dark on white (the way a product photo looks).
    let (source, label, probs) = evaluated(&t, "evaluate@main", 0);
    let raw = learn::data::idx::read_gz(&t.path("data/t10k-images-idx3-ubyte.gz")).unwrap();
    let images = learn::data::idx::decode_images(Path::new("t10k"), &raw).unwrap();
    let px = &images.pixels[source * 784..(source + 1) * 784];
    let grey = GrayImage::from_fn(28, 28, |x, y| Luma([px[(y * 28 + x) as usize]]));
    let pics = t.path("pics");
    fs::create_dir_all(&pics).unwrap();
    save(
        &DynamicImage::ImageLuma8(grey.clone()),
        &pics.join("a.png"),
        ImageOutputFormat::Png,
    );
    let photo = RgbImage::from_fn(140, 140, |x, y| {
        let v = 255 - px[(y / 5 * 28 + x / 5) as usize];
        image::Rgb([v, v, v])
    });
    save(
        &DynamicImage::ImageRgb8(photo),
        &pics.join("b.jpg"),
        ImageOutputFormat::Jpeg(95),
    );
    fs::write(pics.join("c.png"), "not a picture").unwrap();
    fs::write(pics.join("d.jpeg"), "").unwrap();
    fs::write(pics.join("notes.txt"), "skipped: not a picture's extension").unwrap();

    let out = t.run(&["predict", "--model", "train@main", "pics", "--json"]);
    assert_eq!(out.code(), 1, "exit 1: some pictures could not be read");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = v["predictions"].as_array().unwrap();
    assert_eq!(p.len(), 4, "{v}");
    // The PNG of a test image: the evaluation's probabilities.
    let top = p[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    let best = top[0]["class"].as_u64().unwrap() as usize;
    let want = (0..10)
        .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
        .unwrap();
    assert_eq!(best, want);
    for c in top {
        let k = c["class"].as_u64().unwrap() as usize;
        let q = c["probability"].as_f64().unwrap();
        assert!(
            (q - probs[k]).abs() < 1e-5,
            "class {k}: {q} vs {}",
            probs[k]
        );
    }
    assert_eq!(p[0]["inverted"], false);
    // The photo: inverted, scaled down, the same class.
    assert_eq!(p[1]["inverted"], true);
    assert_eq!(p[1]["size"], serde_json::json!([140, 140]));
    assert_eq!(p[1]["top"][0]["class"].as_u64().unwrap() as usize, best);
    assert_eq!(p[2]["error"], "not a PNG or JPEG image");
    assert_eq!(p[3]["error"], "the file is empty");
    assert!(label < 10);

    // Plain text, the best variant by default, the broken file named.
    let out = t.run(&["predict", "pics/a.png", "pics/c.png"]);
    assert_eq!(out.code(), 1);
    let text = out.stdout();
    assert!(
        text.contains("the variant of compare with the best validation accuracy")
            && text.contains("was not used to choose"),
        "{text}"
    );
    // Chosen by validation accuracy, never by the test set's.
    let val = |stage: &str| {
        let t: serde_json::Value = serde_json::from_slice(
            &fs::read(t.path(&format!("outputs/{stage}/train.json"))).unwrap(),
        )
        .unwrap();
        t["best_val_acc"].as_f64().unwrap()
    };
    let by_validation = if val("train@main") >= val("train@slow") {
        "train@main"
    } else {
        "train@slow"
    };
    let chosen = t.run(&["predict", "pics/a.png", "--json"]).ok().stdout();
    let chosen: serde_json::Value = serde_json::from_str(&chosen).unwrap();
    assert_eq!(chosen["model"]["stage"], by_validation, "{chosen}");
    assert!(
        text.contains("pics/c.png  error: not a PNG or JPEG image"),
        "{text}"
    );
    assert!(text.contains('%'), "{text}");
    t.run(&["predict", "--model", "train", "pics/a.png"])
        .exits(2)
        .has("`train` names 2 models (train@main, train@slow); name one");
    t.run(&["predict", "--model", "evaluate@main", "pics/a.png"])
        .exits(2)
        .has("`evaluate@main` is not a train stage");
}
