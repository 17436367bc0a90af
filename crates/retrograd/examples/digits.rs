//! Trains a 64-128-10 MLP (or, with `--model cnn`, a small convolutional network) on the
//! bundled handwritten digits (1797 images of 8x8 pixels), with a fixed seed and an 80/20
//! train/test split; prints the loss and accuracy per epoch,
//! draws the training curves into a PNG, saves the model as safetensors, loads it into a
//! fresh parameter store and checks that it scores the same. The last line printed is the
//! test accuracy.
//!
//! Run with `cargo run --release --example digits -- --out DIR` (default `target/digits`).
//! Options: `--model mlp|cnn` (default mlp), `--epochs N` (default 30 for the MLP, 15 for
//! the CNN), `--seed N` (default 0).
//!
//! The CNN is conv 3x3 (16) + batch norm + ReLU, conv 3x3 (32) + batch norm + ReLU, 2x2 max
//! pooling, then 512-64-10 with ReLU: the image's neighbourhoods are built in, where the
//! MLP has to learn them from 64 unrelated inputs.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array1, Array2, ArrayD, Ix1, Ix2, IxDyn};
use retrograd::nn::conv::{Conv2d, Flatten, MaxPool2d};
use retrograd::nn::data::{Batches, Split, digits, train_test_split};
use retrograd::nn::layers::{Activation, Linear, Relu, mlp};
use retrograd::nn::norm::BatchNorm2d;
use retrograd::nn::optim::{Adam, Optimizer};
use retrograd::nn::{Module, ParamStore, Sequential, Session, checkpoint, loss};

const HIDDEN: usize = 128;
const BATCH: usize = 32;
const LEARNING_RATE: f64 = 2e-3;
const TEST_FRACTION: f64 = 0.2;

struct Args {
    out: PathBuf,
    cnn: bool,
    /// `None`: the model's default (30 for the MLP, 15 for the CNN, which plateaus sooner).
    epochs: Option<usize>,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        out: PathBuf::from("target/digits"),
        cnn: false,
        epochs: None,
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => args.out = PathBuf::from(value()?),
            "--model" => {
                args.cnn = match value()?.as_str() {
                    "mlp" => false,
                    "cnn" => true,
                    other => return Err(format!("--model: {other:?} is neither mlp nor cnn")),
                }
            }
            "--epochs" => {
                args.epochs = Some(value()?.parse().map_err(|e| format!("--epochs: {e}"))?)
            }
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "-h" | "--help" => {
                println!("usage: digits [--out DIR] [--model mlp|cnn] [--epochs N] [--seed N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

/// One epoch's figures.
struct EpochStats {
    train_loss: f64,
    train_acc: f64,
    test_loss: f64,
    test_acc: f64,
}

/// The network and how it sees an image: a row of 64 pixels for the MLP, a one-channel
/// 8x8 picture for the CNN.
struct Model {
    net: Sequential<f32>,
    images: bool,
}

impl Model {
    fn mlp() -> Self {
        let net = mlp(&[digits::PIXELS, HIDDEN, digits::CLASSES], Activation::Relu);
        Model { net, images: false }
    }

    fn cnn() -> Self {
        let net = Sequential::new()
            .append(Conv2d::new(1, 16, 3).padding(1))
            .append(BatchNorm2d::new(16))
            .append(Relu)
            .append(Conv2d::new(16, 32, 3).padding(1))
            .append(BatchNorm2d::new(32))
            .append(Relu)
            .append(MaxPool2d::new(2))
            .append(Flatten)
            .append(Linear::new(32 * 4 * 4, 64))
            .append(Relu)
            .append(Linear::new(64, digits::CLASSES));
        Model { net, images: true }
    }

    /// A batch of pixel rows in the network's input layout.
    fn input(&self, x: Array2<f32>) -> ArrayD<f32> {
        if !self.images {
            return x.into_dyn();
        }
        let (n, side) = (x.nrows(), (digits::PIXELS as f64).sqrt() as usize);
        x.into_dyn()
            .into_shape_with_order(IxDyn(&[n, 1, side, side]))
            .expect("a row of 64 pixels is an 8x8 image")
    }
}

/// The mean cross-entropy and the accuracy of `model` on `(x, y)`, in evaluation mode.
fn evaluate(
    session: &mut Session<f32>,
    model: &Model,
    store: &ParamStore<f32>,
    x: &Array2<f32>,
    y: &[usize],
) -> (f64, f64) {
    let input = model.input(x.clone());
    let logits = session.eval(store, |p| model.net.forward(p.input(input), p));
    let logits = logits
        .into_dimensionality::<ndarray::Ix2>()
        .expect("both models map a batch to [N, 10]");
    let ce = session.eval(store, |p| loss::cross_entropy(&p.input(logits.clone()), y));
    let ce = ce.iter().next().copied().unwrap_or(f32::NAN);
    (f64::from(ce), loss::accuracy(&logits, y))
}

/// The split the demo trains and tests on.
type DigitsSplit = Split<f32, usize, Ix2, Ix1>;

/// Trains `model` for `epochs` epochs of Adam with a progress bar per epoch, printing the
/// train and test loss and accuracy after each; returns them.
fn train(
    model: &Model,
    store: &mut ParamStore<f32>,
    session: &mut Session<f32>,
    split: &DigitsSplit,
    seed: u64,
    epochs: usize,
) -> Result<Vec<EpochStats>, Box<dyn Error>> {
    let y_train: Vec<usize> = split.y_train.to_vec();
    let y_test: Vec<usize> = split.y_test.to_vec();
    let mut opt = Adam::new(LEARNING_RATE);
    let style = ProgressStyle::with_template(
        "epoch {prefix:>2} [{bar:30.cyan/blue}] {pos:>2}/{len} batches, loss {msg}",
    )?
    .progress_chars("=> ");
    let mut history: Vec<EpochStats> = Vec::with_capacity(epochs);
    for epoch in 1..=epochs {
        let batches = Batches::new(&split.x_train, &split.y_train, BATCH)
            .shuffled(seed.wrapping_add(epoch as u64));
        let bar = ProgressBar::new(batches.len() as u64)
            .with_style(style.clone())
            .with_prefix(epoch.to_string());
        for (xb, yb) in batches {
            let yb: Array1<usize> = yb;
            let labels = yb.as_slice().expect("a fresh batch is contiguous");
            let input = model.input(xb);
            let (batch_loss, grads) = session.train_step(store, |p| {
                loss::cross_entropy(&model.net.forward(p.input(input), p), labels)
            })?;
            opt.step(store, &grads)?;
            // The batch norms' running statistics (the MLP has none).
            session.update_buffers(store);
            bar.set_message(format!("{batch_loss:.4}"));
            bar.inc(1);
        }
        bar.finish_and_clear();

        let (train_loss, train_acc) = evaluate(session, model, store, &split.x_train, &y_train);
        let (test_loss, test_acc) = evaluate(session, model, store, &split.x_test, &y_test);
        println!(
            "epoch {epoch:>2}/{}: train loss {train_loss:.4}, accuracy {train_acc:.4} | test loss {test_loss:.4}, accuracy {test_acc:.4}",
            epochs
        );
        history.push(EpochStats {
            train_loss,
            train_acc,
            test_loss,
            test_acc,
        });
    }
    Ok(history)
}

/// Saves the model to `path`, loads it into a fresh store (other initial values) and
/// checks that it scores `test_acc` again.
fn check_round_trip(
    model: &Model,
    store: &ParamStore<f32>,
    session: &mut Session<f32>,
    split: &DigitsSplit,
    path: &Path,
    seed: u64,
    test_acc: f64,
) -> Result<(), Box<dyn Error>> {
    checkpoint::save(store, path)?;
    let mut fresh = model.net.init_store(seed.wrapping_add(1));
    checkpoint::load(&mut fresh, path)?;
    let y_test: Vec<usize> = split.y_test.to_vec();
    let (_, reloaded_acc) = evaluate(session, model, &fresh, &split.x_test, &y_test);
    if reloaded_acc != test_acc {
        return Err(format!(
            "the reloaded model scores {reloaded_acc:.4}, the trained one {test_acc:.4}"
        )
        .into());
    }
    println!(
        "saved the model to {} and loaded it into a fresh store: same test accuracy",
        path.display()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    // A usage error is printed as text and exits with status 2, as command-line tools do
    // (through `?` a `String` would be shown Debug-quoted).
    let args = parse_args().unwrap_or_else(|message| {
        eprintln!("digits: {message}");
        std::process::exit(2)
    });
    let epochs = args.epochs.unwrap_or(if args.cnn { 15 } else { 30 });
    let started = Instant::now();
    std::fs::create_dir_all(&args.out)?;

    let (images, labels) = digits::load::<f32>()?;
    let split = train_test_split(&images, &labels, TEST_FRACTION, args.seed);
    let y_test: Vec<usize> = split.y_test.to_vec();
    println!(
        "digits: {} images of {} pixels, {} for training, {} for testing",
        images.nrows(),
        images.ncols(),
        split.y_train.len(),
        y_test.len()
    );

    let (model, name) = if args.cnn {
        (Model::cnn(), "cnn")
    } else {
        (Model::mlp(), "mlp")
    };
    let mut store = model.net.init_store(args.seed);
    let described = if args.cnn {
        "CNN conv3x3(16)-BN-ReLU, conv3x3(32)-BN-ReLU, maxpool2, 512-64-10".to_string()
    } else {
        format!("MLP {}-{HIDDEN}-{} (ReLU)", digits::PIXELS, digits::CLASSES)
    };
    println!(
        "model: {described}, {} parameters; Adam lr {LEARNING_RATE}, batch {BATCH}, {} epochs",
        model.net.num_parameters(),
        epochs
    );
    let mut session = Session::new(args.seed);
    let history = train(&model, &mut store, &mut session, &split, args.seed, epochs)?;
    let (_, test_acc) = evaluate(&mut session, &model, &store, &split.x_test, &y_test);

    let path = args.out.join(format!("digits_{name}.safetensors"));
    check_round_trip(
        &model,
        &store,
        &mut session,
        &split,
        &path,
        args.seed,
        test_acc,
    )?;
    let plot = args.out.join(if args.cnn {
        "training_curves_cnn.png"
    } else {
        "training_curves.png"
    });
    let labelled = plot_curves(&history, &plot)?;
    println!(
        "wrote the loss and accuracy curves to {}{}",
        plot.display(),
        if labelled {
            ""
        } else {
            " (no font file found: curves without text; red = train, blue = test)"
        }
    );
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    println!("test accuracy: {test_acc:.4}");
    Ok(())
}

/// Common places of a TrueType font, tried in order. The plot is drawn in pure Rust
/// (plotters with ab_glyph), so text needs a font file at run time; without one the curves
/// are drawn without labels.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers the first font found (or the one in `$RETROGRAD_FONT`; `none` for no text)
/// as plotters' "sans-serif"; returns whether there is one.
fn register_font() -> bool {
    let from_env = std::env::var("RETROGRAD_FONT").ok();
    if from_env.as_deref() == Some("none") {
        return false;
    }
    let candidates = from_env
        .iter()
        .map(String::as_str)
        .chain(FONT_PATHS.iter().copied());
    for path in candidates {
        if let Ok(bytes) = std::fs::read(path) {
            // plotters keeps fonts for the life of the program.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(
                "sans-serif",
                plotters::style::FontStyle::Normal,
                bytes,
            )
            .is_ok()
            {
                return true;
            }
        }
    }
    false
}

/// Draws the loss (left) and accuracy (right) per epoch, train in red and test in blue.
/// Returns whether the axes and legends are labelled (a font was found).
fn plot_curves(history: &[EpochStats], path: &Path) -> Result<bool, Box<dyn Error>> {
    use plotters::prelude::*;

    let labelled = register_font();
    let root = BitMapBackend::new(path, (1100, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    let epochs = history.len().max(1) as f64;
    let max_loss = history
        .iter()
        .flat_map(|s| [s.train_loss, s.test_loss])
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.05;
    let min_acc = history
        .iter()
        .flat_map(|s| [s.train_acc, s.test_acc])
        .fold(1.0f64, f64::min)
        .min(0.9);

    type Curve = (&'static str, RGBColor, fn(&EpochStats) -> f64);
    type Panel<'a, A> = (
        &'a A,
        &'static str,
        std::ops::Range<f64>,
        SeriesLabelPosition,
        [Curve; 2],
    );
    let panels: [Panel<'_, DrawingArea<_, _>>; 2] = [
        (
            &left,
            "cross-entropy loss",
            0.0..max_loss,
            SeriesLabelPosition::UpperRight,
            [
                ("train", RED, |s| s.train_loss),
                ("test", BLUE, |s| s.test_loss),
            ],
        ),
        (
            &right,
            "accuracy",
            (min_acc - 0.02).max(0.0)..1.0,
            SeriesLabelPosition::LowerRight,
            [
                ("train", RED, |s| s.train_acc),
                ("test", BLUE, |s| s.test_acc),
            ],
        ),
    ];
    for (area, title, y_range, legend_at, curves) in panels {
        let mut builder = ChartBuilder::on(area);
        builder.margin(15);
        if labelled {
            builder
                .caption(title, ("sans-serif", 22))
                .x_label_area_size(40)
                .y_label_area_size(55);
        }
        let mut chart = builder.build_cartesian_2d(1.0..epochs, y_range)?;
        let mut mesh = chart.configure_mesh();
        if labelled {
            mesh.x_desc("epoch")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .label_style(("sans-serif", 14));
        } else {
            // The grid without the axes, whose tick labels would need a font.
            mesh.disable_axes();
        }
        mesh.draw()?;
        for (name, color, value) in curves {
            let series = chart.draw_series(LineSeries::new(
                history
                    .iter()
                    .enumerate()
                    .map(|(i, s)| ((i + 1) as f64, value(s))),
                color.stroke_width(2),
            ))?;
            if labelled {
                series.label(name).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
        }
        if labelled {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .position(legend_at)
                .draw()?;
        }
    }
    root.present()?;
    Ok(labelled)
}
