//! Records a small network's forward and backward pass and shows what the tape holds:
//! the table, the summary, `tape.dot` and `tape.json` (and `tape.svg` when Graphviz's
//! `dot` is installed) in the folder given as the first argument (`target/inspect` by
//! default), then anomaly mode catching a NaN with the line it came from.
//!
//! ```text
//! cargo run -p retrograd --example inspect -- target/inspect
//! ```

use std::path::PathBuf;
use std::process::Command;

use ndarray::array;
use retrograd::ops::prelude::*;
use retrograd::tape::hooks::clip_norm;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/inspect"));
    std::fs::create_dir_all(&dir)?;

    // A two-layer network on a batch of two examples, with named parameters.
    let tape = Tape::<f64>::new();
    tape.set_record_grad_norms(true);
    let x = tape.constant(array![[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]]);
    let target = tape.constant(array![[1.0], [0.0]]);
    let w1 = tape
        .var(array![
            [0.1, -0.2, 0.3, 0.0],
            [0.4, 0.1, -0.1, 0.2],
            [-0.3, 0.2, 0.1, 0.5]
        ])
        .named("layer1.weight");
    let b1 = tape.var(array![0.0, 0.1, -0.1, 0.0]).named("layer1.bias");
    let w2 = tape
        .var(array![[0.5], [-0.4], [0.3], [0.2]])
        .named("layer2.weight");
    let b2 = tape.var(array![0.05]).named("layer2.bias");

    let h = (x.matmul(&w1) + b1).tanh();
    let out = h.matmul(&w2) + b2;
    let diff = out - target;
    let loss = (diff * diff).mean_all().named("loss");

    // Clip the first layer's gradient per tensor, and keep the graph so the table still
    // shows each op's attributes and costs after the sweep.
    w1.register_hook(clip_norm(0.5));
    let grads = loss.backward_with(&GradOptions::new().retain_graph())?;
    grads.check_finite()?;

    println!("The tape after forward and backward (|grad| is each cotangent's norm):\n");
    println!("{}", tape.dump());
    println!("Only the parameters:\n\n{}", tape.dump().labelled());
    println!("{}\n", tape.summary());

    let dot_path = dir.join("tape.dot");
    std::fs::write(&dot_path, tape.dot().highlight(loss).to_string())?;
    let json_path = dir.join("tape.json");
    std::fs::write(&json_path, tape.to_json())?;
    println!("wrote {} and {}", dot_path.display(), json_path.display());
    let svg_path = dir.join("tape.svg");
    match Command::new("dot")
        .arg("-Tsvg")
        .arg(&dot_path)
        .arg("-o")
        .arg(&svg_path)
        .status()
    {
        Ok(status) if status.success() => println!("wrote {}", svg_path.display()),
        Ok(status) => println!("Graphviz's dot failed ({status}); no SVG"),
        Err(_) => println!("Graphviz's dot is not installed; no SVG (render tape.dot yourself)"),
    }

    // Anomaly mode: ln of a negative number is NaN; the sweep reports the op and the line.
    println!("\nAnomaly mode:");
    let tape = Tape::<f64>::new();
    tape.set_anomaly_mode(true);
    let x = tape.var(array![1.0, -2.0, 3.0]);
    let y = (x.ln() * 2.0).sum_all();
    match y.backward() {
        Err(e) => println!("caught: {e}"),
        Ok(_) => println!("no anomaly found (unexpected)"),
    }
    Ok(())
}
