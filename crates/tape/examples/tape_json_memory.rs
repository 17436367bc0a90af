//! Writes a large tape's JSON, or reads one back, so that the memory a read needs can be
//! measured on its own (the figures in `docs/inspecting.md`):
//!
//! ```text
//! cargo build --release -p retrograd-tape --example tape_json_memory
//! target/release/examples/tape_json_memory write 117500 /tmp/tape.json
//! /usr/bin/time -v target/release/examples/tape_json_memory read /tmp/tape.json
//! /usr/bin/time -v target/release/examples/tape_json_memory read-file /tmp/tape.json
//! ```
//!
//! `write` records `steps` steps of a small recurrence (four nodes a step, three of them
//! with a scalar attribute, each with its source line) and writes `tape.to_json()`.
//! `read` reads the file into a `String` and parses it with `TapeJson::from_str`;
//! `read-file` parses it from the open file with `TapeJson::from_reader`. Each prints the
//! document's size and the number of nodes read.

use std::io::Write;
use std::str::FromStr;

use retrograd_tape::{Tape, TapeJson};

fn write(steps: usize, path: &str) {
    let tape = Tape::<f64>::new();
    let w = tape.var(ndarray::array![0.5, -0.25]).named("w");
    let mut h = tape.var(ndarray::array![1.0, 2.0]).named("h0");
    for _ in 0..steps {
        h = (h * 0.9 + 0.1) * w - 0.5;
    }
    let text = tape.to_json();
    let mut file = std::fs::File::create(path).expect("create the output file");
    file.write_all(text.as_bytes()).expect("write the document");
    println!("wrote {} bytes, {} nodes", text.len(), tape.len());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (size, tape) = match args.as_slice() {
        ["write", steps, path] => return write(steps.parse().expect("a number of steps"), path),
        ["read", path] => {
            let text = std::fs::read_to_string(path).expect("read the document");
            (text.len(), TapeJson::from_str(&text))
        }
        ["read-file", path] => {
            let file = std::fs::File::open(path).expect("open the document");
            let size = file.metadata().map_or(0, |m| m.len() as usize);
            (size, TapeJson::from_reader(file))
        }
        _ => {
            eprintln!(
                "usage: tape_json_memory write <steps> <path> | read <path> | read-file <path>"
            );
            std::process::exit(2);
        }
    };
    let tape = tape.expect("a valid tape document");
    println!("read {size} bytes, {} nodes", tape.nodes.len());
}
