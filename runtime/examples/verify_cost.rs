use runtime::model::{KvType, Llama, ModelError};
use runtime::tasks;
use std::time::Instant;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let threads: u32 = std::env::args().nth(2).map_or(0, |t| t.parse().unwrap());
    runtime::sysinfo::select_kernels().unwrap();
    let l = tasks::open_model(path.as_ref()).unwrap();
    let mut m = Llama::new(&l.file, 1024, KvType::F16).unwrap();
    let pool = tasks::pool(threads);
    let toks: Vec<u32> = (0..300).map(|i| (i * 7919 + 13) % 49152).collect();
    m.forward_batch(&toks, 0, &pool, 299, |_, _| Ok::<(), ModelError>(()))
        .unwrap();
    for n in [1usize, 1, 2, 3, 4, 5, 6, 8, 9, 16] {
        let reps = 100;
        let t = Instant::now();
        for r in 0..reps {
            m.forward(toks[r % 300], 300, &pool).unwrap();
        }
        let single = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let t = Instant::now();
        for _ in 0..reps {
            m.forward_batch(&toks[..n], 300, &pool, 0, |_, _| Ok::<(), ModelError>(()))
                .unwrap();
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        println!(
            "n={n}: batch {ms:.2} ms; single {single:.2} ms; ratio {:.2}",
            ms / single
        );
    }
}
