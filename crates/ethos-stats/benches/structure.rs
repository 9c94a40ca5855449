//! Times the structure analysis (observed statistics plus 10,000 permutations for all three nulls) on the 13 x 33
//! fixture matrix, without criterion: `cargo bench -p ethos-stats --bench structure [-- PERMUTATIONS]`.
//! Compare with `scripts/bench_stats_structure.py`, the numpy/scipy equivalent, on the same machine.

use std::path::PathBuf;
use std::time::Instant;

use ethos_stats::structure::{analyze_structure, Direction, EvalColumn, EvalMatrix, StructureConfig};

fn fixture_matrix() -> EvalMatrix {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/stats/structure");
    let matrix_text = std::fs::read_to_string(dir.join("M.csv")).expect("read M.csv");
    let orientation_text = std::fs::read_to_string(dir.join("O.csv")).expect("read O.csv");
    let lower: Vec<&str> = orientation_text
        .lines()
        .skip(1)
        .filter(|line| line.ends_with(",lower"))
        .filter_map(|line| line.split(',').next())
        .collect();
    let mut lines = matrix_text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    let columns = (1..header.len())
        .map(|column_idx| EvalColumn {
            name: header[column_idx].to_string(),
            direction: if lower.contains(&header[column_idx]) { Direction::Lower } else { Direction::Higher },
            values: rows.iter().map(|row| row[column_idx].parse().expect("number")).collect(),
        })
        .collect();
    EvalMatrix::new(rows.iter().map(|row| row[0].to_string()).collect(), columns).expect("valid matrix")
}

fn main() {
    let n_permutations: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(10_000);
    let matrix = fixture_matrix();
    let config = StructureConfig { n_permutations, seed: 0 };
    // One warm-up run (thread pool start, page faults), then the best and median of 5.
    analyze_structure(&matrix, &config).expect("analysis");
    let mut times = Vec::new();
    let mut report = None;
    for _ in 0..5 {
        let start = Instant::now();
        report = Some(analyze_structure(&matrix, &config).expect("analysis"));
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let report = report.expect("ran");
    let nulls = report.nulls.expect("nulls");
    println!(
        "mean_spearman: {:.6}  null 95% [{:.6}, {:.6}]",
        report.statistics.mean_spearman, nulls.mean_spearman.low, nulls.mean_spearman.high
    );
    println!(
        "pc1_explained: {:.6}  null 95% [{:.6}, {:.6}]",
        report.statistics.pc1_explained, nulls.pc1_explained.low, nulls.pc1_explained.high
    );
    println!(
        "loo_mean_spearman: {:.6}  null 95% [{:.6}, {:.6}]",
        report.statistics.loo_mean_spearman, nulls.loo_mean_spearman.low, nulls.loo_mean_spearman.high
    );
    println!(
        "{} x {}, {n_permutations} permutations, {} threads: best {:.3} s, median {:.3} s",
        matrix.models().len(),
        matrix.evals().len(),
        rayon::current_num_threads(),
        times[0],
        times[2]
    );
}
