//! Records a small function on a tape, prints the tape and the gradient, then takes a
//! second derivative through the recorded backward sweep.
//!
//! Run with `cargo run --release --example quickstart`.

use retrograd::prelude::*;

fn main() -> Result<(), Error> {
    let tape = Tape::<f64>::new();
    let x = tape.var(ndarray::array![0.5, 1.0, 2.0]);
    let w = tape.var(ndarray::array![1.5, -2.0, 0.25]);

    // f(x, w) = sum(w * x^3 / (1 + x))
    let f = (w * x * x * x / (x + 1.0)).sum_all();
    println!("f = {}", f.item());
    println!("\nthe recorded tape:\n{tape}");

    let grads = tape.grad_with(f, &[x, w], &GradOptions::new().retain_graph())?;
    println!("\ndf/dx = {}", grads[0].value());
    println!("df/dw = {}", grads[1].value());

    // The backward sweep can record itself, so its result can be differentiated again.
    let dfdx = tape.grad_graph(f, &[x])?[0];
    let d2 = tape.grad(dfdx.sum_all(), &[x])?;
    println!("\nsum_j d2f/dx_i dx_j = {}", d2[0]);
    Ok(())
}
