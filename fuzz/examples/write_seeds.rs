//! Writes the seed corpus (`berth_fuzz::seeds`) to `fuzz/corpus/<target>/`. Run after
//! changing a scenario or the `Op` enum: `cargo run --manifest-path fuzz/Cargo.toml
//! --example write_seeds`.

fn main() -> std::io::Result<()> {
    let root = berth_fuzz::replay::fuzz_dir().join("corpus");
    for seed in berth_fuzz::seeds::seeds() {
        let dir = root.join(seed.target);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("seed-{}", seed.name));
        std::fs::write(&path, &seed.bytes)?;
        println!("{} ({} bytes)", path.display(), seed.bytes.len());
    }
    Ok(())
}
