//! Prints how long `PrivateContainerd::start()` (containerd up + image imported),
//! `restart()` and `shutdown()` take. Usage: `cargo run -p berth-testkit --example start_time [N]`.

use std::time::{Duration, Instant};

use berth_testkit::{HarnessError, PrivateContainerd, require_root_and_tools};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), HarnessError> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    require_root_and_tools()?;
    // Warm-up: builds the image tar into the cache if needed.
    PrivateContainerd::start().await?.shutdown().await?;
    let (mut start, mut restart, mut stop) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let mut ctd = PrivateContainerd::start().await?;
        start.push(t.elapsed());
        let t = Instant::now();
        ctd.restart().await?;
        restart.push(t.elapsed());
        let t = Instant::now();
        ctd.shutdown().await?;
        stop.push(t.elapsed());
    }
    for (name, v) in [("start", start), ("restart", restart), ("shutdown", stop)] {
        let (min, max) = (*v.iter().min().unwrap(), *v.iter().max().unwrap());
        println!(
            "{name:>8}: median {:?}  min {min:?}  max {max:?}  (n={n})",
            median(v)
        );
    }
    Ok(())
}
