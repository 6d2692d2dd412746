//! Golden images: each sample state rendered and compared pixel for pixel with the
//! PNG committed in `tests/golden/`. After a deliberate layout change, regenerate
//! with `UPDATE_GOLDEN=1 cargo test -p wattstream-display --test golden` and look
//! at every image before committing.

use std::path::PathBuf;

use wattstream_display::panel::png::{read_png, write_png};
use wattstream_display::{render, samples};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn every_screen_matches_its_golden_image() {
    let dir = tempfile::tempdir().unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for (name, state) in samples::all() {
        let path = dir.path().join(format!("{name}.json"));
        if let Some(s) = &state {
            s.write(&path).unwrap();
        }
        let frame = render(&path, samples::NOW, 30);
        let golden = golden_dir().join(format!("{name}.png"));
        if update {
            write_png(&frame, &golden).unwrap();
            continue;
        }
        let (w, h, pixels) = read_png(&golden).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((w, h), (160, 128), "{name}");
        let actual = frame.rgb8();
        let differing = pixels
            .chunks(3)
            .zip(actual.chunks(3))
            .filter(|(a, b)| a != b)
            .count();
        if differing > 0 {
            let out = std::env::temp_dir().join(format!("wattstream-{name}-actual.png"));
            write_png(&frame, &out).unwrap();
            failures.push(format!(
                "{name}: {differing} pixels differ (actual frame in {})",
                out.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_screens_differ_where_they_should() {
    // A guard against goldens that all look alike: each state changes the picture.
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<_> = samples::all()
        .into_iter()
        .map(|(name, state)| {
            let path = dir.path().join(format!("{name}.json"));
            if let Some(s) = &state {
                s.write(&path).unwrap();
            }
            render(&path, samples::NOW, 30).rgb8()
        })
        .collect();
    for i in 0..frames.len() {
        for j in i + 1..frames.len() {
            assert_ne!(frames[i], frames[j], "screens {i} and {j} are identical");
        }
    }
}
