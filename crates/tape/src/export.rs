//! Exporting a tape for other tools: Graphviz DOT (to look at) and JSON (to read).
//!
//! # The JSON schema, version 1
//!
//! [`Tape::to_json`] writes one object:
//!
//! ```text
//! {
//!   "schema": "retrograd.tape",   // always this string
//!   "version": 1,                 // bumped on any incompatible change
//!   "dtype": "f64",               // the tape's element type
//!   "nodes": [                    // in evaluation order: nodes[i].id == i
//!     {
//!       "id": 2,                          // position in evaluation order
//!       "op": "mul",                      // op name; "var"/"constant" for leaves
//!       "kind": "op",                     // "leaf" | "constant" | "op" | "spent"
//!       "attributes": [["c", "2"]],       // (name, value) pairs, strings
//!       "inputs": [0, 1],                 // ids of the inputs, in order
//!       "shape": [2, 3],                  // [] for a scalar
//!       "dtype": "f64",
//!       "bytes": 48,                      // bytes of the value
//!       "saved_bytes": 48,                // bytes held for the backward pass
//!       "madds": 6,                       // estimated forward multiply-adds
//!       "requires_grad": true,
//!       "location": {"file": "src/main.rs", "line": 12, "column": 13},
//!       "label": "layer1.weight",         // or null
//!       "grad_norm": 1.5                  // or null (not recorded, or not finite)
//!     }
//!   ]
//! }
//! ```
//!
//! The fields are those of [`NodeInfo`]; readers should ignore fields they do not know
//! (new optional fields do not change the version). [`TapeJson`] reads it back
//! (`TapeJson::from_str` or `str::parse`), refusing another schema, version 0 or a newer
//! version, and documents that are not a tape: a dtype other than `f32`/`f64` (for the
//! tape or a node), node ids that do not increase, an input that is not an earlier node.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Float;
use crate::inspect::{Dump, NodeInfo, NodeKind};
use crate::tape::Tape;
use crate::var::Var;

/// A tape in the JSON schema of [the module docs](crate::export): what
/// [`Tape::to_json`] writes and [`TapeJson::from_str`] reads.
///
/// ```
/// use std::str::FromStr;
/// use retrograd_tape::{Tape, export::TapeJson};
/// let tape = Tape::<f64>::new();
/// let x = tape.var(2.0).named("x");
/// let _y = x * x;
/// let text = tape.to_json();
/// let back = TapeJson::from_str(&text).unwrap();
/// assert_eq!(back.nodes, tape.nodes());
/// assert_eq!((back.version, back.dtype.as_str()), (1, "f64"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapeJson {
    /// Always [`TapeJson::SCHEMA`].
    pub schema: String,
    /// The schema version, [`TapeJson::VERSION`] when written by this library.
    pub version: u32,
    /// The tape's element type.
    pub dtype: String,
    /// The nodes, in evaluation order.
    pub nodes: Vec<NodeInfo>,
}

impl TapeJson {
    /// The schema's name.
    pub const SCHEMA: &'static str = "retrograd.tape";
    /// The schema version this library writes and the newest it reads.
    pub const VERSION: u32 = 1;

    /// The JSON text, indented for people.
    pub fn to_string_pretty(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Why JSON text could not be read as a tape.
///
/// `{:?}` prints the same text as `{}`: an error that reaches the end of `main` through `?`
/// is printed with `Debug`, and there the message is what helps. Match on the variants
/// for the structured facts.
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON, or not the shape of the schema.
    Parse(serde_json::Error),
    /// Another schema's name.
    Schema(String),
    /// A version newer than this library reads, or 0 (no version ever was).
    Version(u32),
    /// Well-formed JSON of the schema's shape that is still not a tape: an unknown dtype,
    /// node ids out of order, an input that is not an earlier node.
    Invalid(String),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Parse(e) => write!(f, "not a retrograd tape in JSON: {e}"),
            JsonError::Schema(s) => write!(f, "JSON schema {s:?} is not {:?}", TapeJson::SCHEMA),
            JsonError::Version(0) => write!(f, "tape JSON version 0 does not exist"),
            JsonError::Version(v) => write!(
                f,
                "tape JSON version {v} is newer than this library reads ({})",
                TapeJson::VERSION
            ),
            JsonError::Invalid(why) => write!(f, "not a valid retrograd tape: {why}"),
        }
    }
}

impl fmt::Debug for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JsonError::Parse(e) => Some(e),
            _ => None,
        }
    }
}

impl FromStr for TapeJson {
    type Err = JsonError;

    /// Reads a tape written by [`Tape::to_json`] (or another tool following the schema).
    fn from_str(s: &str) -> Result<Self, JsonError> {
        serde_json::from_str::<TapeJson>(s)
            .map_err(JsonError::Parse)?
            .checked()
    }
}

impl TapeJson {
    /// Reads a tape from a stream, such as an open file, without holding the document in
    /// memory: only the nodes read so far are kept (a `BufReader` is put around `reader`).
    /// Refuses what [`from_str`](TapeJson::from_str) refuses.
    ///
    /// ```
    /// use retrograd_tape::{Tape, TapeJson};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(2.0);
    /// let _ = x * x;
    /// let text = tape.to_json();
    /// let back = TapeJson::from_reader(text.as_bytes()).unwrap();
    /// assert_eq!(back.nodes, tape.nodes());
    /// ```
    ///
    /// # Errors
    /// [`JsonError::Parse`] for text that is not JSON of the schema's shape (a read error
    /// of the stream included), and the other variants as for `from_str`.
    pub fn from_reader(reader: impl std::io::Read) -> Result<Self, JsonError> {
        serde_json::from_reader::<_, TapeJson>(std::io::BufReader::new(reader))
            .map_err(JsonError::Parse)?
            .checked()
    }

    /// The parsed document if it is a tape of a version this library reads.
    fn checked(self) -> Result<Self, JsonError> {
        let t = self;
        if t.schema != Self::SCHEMA {
            return Err(JsonError::Schema(t.schema));
        }
        if t.version == 0 || t.version > Self::VERSION {
            return Err(JsonError::Version(t.version));
        }
        t.validate().map_err(JsonError::Invalid)?;
        Ok(t)
    }
}

impl TapeJson {
    /// The element types a tape can hold.
    const DTYPES: [&'static str; 2] = ["f32", "f64"];

    /// Checks what the schema promises beyond its shape: known dtypes, node ids strictly
    /// increasing (`0..n` for a whole tape; a filtered [`Dump`] keeps a subset), and every
    /// input an earlier node (a tape is recorded in evaluation order).
    fn validate(&self) -> Result<(), String> {
        if !Self::DTYPES.contains(&self.dtype.as_str()) {
            return Err(format!("unknown dtype {:?}", self.dtype));
        }
        let mut previous: Option<usize> = None;
        for node in &self.nodes {
            let id = node.id;
            if previous.is_some_and(|p| id <= p) {
                return Err(format!(
                    "node ids are not increasing: {id} follows {previous:?}"
                ));
            }
            previous = Some(id);
            if node.dtype != self.dtype {
                return Err(format!(
                    "node {id} has dtype {:?} in a {} tape",
                    node.dtype, self.dtype
                ));
            }
            if let Some(&input) = node.inputs.iter().find(|&&i| i >= id) {
                return Err(format!(
                    "node {id} takes node {input} as an input, which is not an earlier node"
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for TapeJson {
    /// The compact JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Dump {
    /// The kept nodes in the JSON schema.
    pub fn to_json(&self) -> TapeJson {
        TapeJson {
            schema: TapeJson::SCHEMA.into(),
            version: TapeJson::VERSION,
            dtype: self.dtype().into(),
            nodes: self.nodes().cloned().collect(),
        }
    }

    /// The kept nodes as a Graphviz graph (edges between kept nodes).
    pub fn to_dot(&self) -> Dot {
        Dot {
            dump: self.clone(),
            highlight: None,
        }
    }
}

impl<T: Float> Tape<T> {
    /// The whole tape in the JSON schema (see [the module docs](crate::export)), as text.
    pub fn to_json(&self) -> String {
        self.dump().to_json().to_string_pretty()
    }

    /// The whole tape as a Graphviz graph; write it with `Display` (or `to_string`) and
    /// render it with `dot -Tsvg`.
    ///
    /// ```
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let w = tape.var(2.0).named("w");
    /// let y = w * w;
    /// let dot = tape.dot().highlight(y).to_string();
    /// assert!(dot.starts_with("digraph tape {"));
    /// assert!(dot.contains("n0 -> n1"));
    /// assert!(dot.contains("w"));
    /// ```
    pub fn dot(&self) -> Dot {
        self.dump().to_dot()
    }
}

/// A tape (or a filtered [`Dump`] of one) as a Graphviz `digraph`, from [`Tape::dot`] or
/// [`Dump::to_dot`]; `Display` writes the DOT text.
///
/// Each node shows its id, op (with attributes), shape, element type and source line
/// (file name and line); named nodes show their name first, in bold. Leaves that require a
/// gradient are blue boxes, constants grey, ops ellipses, freed ops dashed. With
/// [`highlight`](Dot::highlight), the nodes and edges on a path from the inputs that
/// require a gradient to the chosen output are drawn thick and red.
#[derive(Debug, Clone)]
pub struct Dot {
    dump: Dump,
    /// By position: the nodes the highlighted output depends on.
    highlight: Option<Vec<bool>>,
}

impl Dot {
    /// Highlights the path from the inputs to `output`.
    ///
    /// # Panics
    /// When `output` belongs to another tape.
    #[track_caller]
    pub fn highlight<T: Float>(mut self, output: Var<'_, T>) -> Self {
        assert!(
            output.tape as *const Tape<T> as usize == self.dump.tape_id(),
            "Dot::highlight: the Var (created at {}) belongs to another tape",
            output.location()
        );
        self.highlight = Some(output.tape.ancestors(output.key));
        self
    }
}

/// Escapes a string for a double-quoted DOT label.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The file name without its directories.
fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = self.dump.all_nodes();
        let hot: Vec<bool> = match &self.highlight {
            Some(on_path) => on_path
                .iter()
                .zip(all)
                .map(|(on, n)| *on && n.requires_grad)
                .collect(),
            None => vec![false; all.len()],
        };
        writeln!(f, "digraph tape {{")?;
        writeln!(f, "  rankdir=TB;")?;
        writeln!(
            f,
            "  node [fontname=\"monospace\", fontsize=10, shape=ellipse];"
        )?;
        writeln!(f, "  edge [color=\"#555555\", fontsize=8];")?;
        let kept: HashSet<usize> = self.dump.nodes().map(|n| n.id).collect();
        for n in self.dump.nodes() {
            let mut lines = Vec::new();
            let head = format!("%{} {}", n.id, n.op_with_attributes());
            let body = format!(
                "{:?} {}\n{}:{}",
                n.shape,
                n.dtype,
                base_name(&n.location.file),
                n.location.line
            );
            let label = match &n.label {
                // An HTML-like label, to set the name in bold.
                Some(name) => {
                    lines.push(format!("<<b>{}</b>", html(name)));
                    lines.push(html(&head));
                    for l in body.lines() {
                        lines.push(html(l));
                    }
                    let mut s = lines.join("<br/>");
                    s.push('>');
                    s
                }
                None => format!("\"{}\\n{}\"", escape(&head), escape(&body)),
            };
            let mut attrs = vec![format!("label={label}")];
            match n.kind {
                NodeKind::Leaf if n.requires_grad => {
                    attrs.push("shape=box".into());
                    attrs.push("style=filled".into());
                    attrs.push("fillcolor=\"#dbe9ff\"".into());
                }
                NodeKind::Leaf | NodeKind::Constant => {
                    attrs.push("shape=box".into());
                    attrs.push("style=filled".into());
                    attrs.push("fillcolor=\"#eeeeee\"".into());
                }
                NodeKind::Spent => attrs.push("style=dashed".into()),
                NodeKind::Op => {}
            }
            if hot[n.id] {
                attrs.push("color=\"#d62728\"".into());
                attrs.push("penwidth=2.5".into());
            }
            writeln!(f, "  n{} [{}];", n.id, attrs.join(", "))?;
        }
        for n in self.dump.nodes() {
            for (slot, &i) in n.inputs.iter().enumerate() {
                if !kept.contains(&i) {
                    continue;
                }
                let mut attrs = Vec::new();
                if n.inputs.len() > 1 {
                    // At the edge's middle, clear of both arrowhead and node.
                    attrs.push(format!("label=\" {slot}\""));
                }
                if hot[i] && hot[n.id] {
                    attrs.push("color=\"#d62728\"".into());
                    attrs.push("penwidth=2.5".into());
                }
                if attrs.is_empty() {
                    writeln!(f, "  n{i} -> n{};", n.id)?;
                } else {
                    writeln!(f, "  n{i} -> n{} [{}];", n.id, attrs.join(", "))?;
                }
            }
        }
        write_legend(f, self.highlight.is_some())?;
        writeln!(f, "}}")
    }
}

/// The key to the picture's shapes and colours, as a boxed cluster of sample nodes.
fn write_legend(f: &mut fmt::Formatter<'_>, highlighted: bool) -> fmt::Result {
    writeln!(f, "  subgraph cluster_legend {{")?;
    writeln!(
        f,
        "    label=\"legend\"; fontname=\"monospace\"; fontsize=10; color=\"#999999\";"
    )?;
    let samples = [
        (
            "var: an input gradients are for",
            "shape=box, style=filled, fillcolor=\"#dbe9ff\"",
        ),
        (
            "constant: no gradient flows",
            "shape=box, style=filled, fillcolor=\"#eeeeee\"",
        ),
        ("op: recorded, with its rule", "shape=ellipse"),
        (
            "freed op: its rule was consumed",
            "shape=ellipse, style=dashed",
        ),
    ];
    for (i, (text, attrs)) in samples.iter().enumerate() {
        writeln!(f, "    legend{i} [label=\"{text}\", {attrs}];")?;
    }
    if highlighted {
        writeln!(
            f,
            "    legend4 [label=\"on the highlighted gradient path\", color=\"#d62728\", penwidth=2.5];"
        )?;
    }
    // Stacked top to bottom by invisible edges; an edge label is an input's position.
    let last = if highlighted { 4 } else { 3 };
    for i in 0..last {
        writeln!(f, "    legend{i} -> legend{} [style=invis];", i + 1)?;
    }
    writeln!(f, "  }}")
}

/// Escapes text for an HTML-like DOT label.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;
    use crate::arith::sum_to;

    fn sample(tape: &Tape<f64>) -> (Var<'_, f64>, Var<'_, f64>) {
        let w = tape
            .var(array![[1.0, 2.0], [3.0, 4.0]])
            .named("layer1.weight");
        let x = tape.constant(array![0.5, -1.0]);
        let b = tape.var(array![0.1, 0.2]).named("layer1.bias");
        let h = w * x + b;
        let side = b * 3.0; // not on the loss's path
        let loss = sum_to(&(h * h), &[]);
        (loss, side)
    }

    /// Node ids and edges of DOT text, read back with a tiny parser.
    fn parse_dot(text: &str) -> (Vec<usize>, Vec<(usize, usize, bool)>) {
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        for line in text.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix('n') else {
                continue;
            };
            if !rest.starts_with(|c: char| c.is_ascii_digit()) {
                continue; // `node [...]` defaults
            }
            if let Some((from, to)) = rest.split_once(" -> n") {
                let to_id: String = to.chars().take_while(char::is_ascii_digit).collect();
                edges.push((
                    from.parse().unwrap(),
                    to_id.parse().unwrap(),
                    line.contains("#d62728"),
                ));
            } else {
                let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
                nodes.push(id.parse().unwrap());
            }
        }
        (nodes, edges)
    }

    #[test]
    fn dot_has_a_legend_and_labels_inputs_mid_edge() {
        let tape = Tape::<f64>::new();
        let (loss, _) = sample(&tape);
        let plain = tape.dot().to_string();
        assert!(plain.contains("subgraph cluster_legend"));
        assert!(plain.contains("var: an input gradients are for"));
        assert!(!plain.contains("on the highlighted gradient path"));
        assert!(!plain.contains("taillabel"));
        assert!(plain.contains("label=\" 1\""), "{plain}");
        let lit = tape.dot().highlight(loss).to_string();
        assert!(lit.contains("on the highlighted gradient path"));
    }

    #[test]
    fn dot_round_trip_and_highlight() {
        let tape = Tape::<f64>::new();
        let (loss, side) = sample(&tape);
        let infos = tape.nodes();
        let text = tape.dot().highlight(loss).to_string();
        let (nodes, edges) = parse_dot(&text);
        assert_eq!(nodes, (0..infos.len()).collect::<Vec<_>>());
        let expected: Vec<(usize, usize)> = infos
            .iter()
            .flat_map(|n| n.inputs.iter().map(move |&i| (i, n.id)))
            .collect();
        let got: Vec<(usize, usize)> = edges.iter().map(|&(a, b, _)| (a, b)).collect();
        assert_eq!(got, expected);
        // Highlighted: edges between nodes that require a gradient on the loss's path.
        let side_id = tape.node_info(side).id;
        for &(a, b, hot) in &edges {
            let on = a != 1 && b != side_id; // the constant x and the side branch are not
            assert_eq!(hot, on, "edge n{a} -> n{b} in\n{text}");
        }
        assert!(text.contains("<b>layer1.weight</b>"), "{text}");
        assert!(text.contains(&format!("export.rs:{}", infos[3].location.line)));
        assert!(text.contains("sum_to(shape=[])"));
        // When Graphviz is installed, it accepts the text.
        if let Ok(mut child) = std::process::Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success(), "dot rejected:\n{text}");
        }
        // A filtered dump exports only its nodes.
        let (nodes, _) = parse_dot(&tape.dump().path_to(side).to_dot().to_string());
        assert_eq!(nodes, vec![2, side_id]);
    }

    #[test]
    fn json_round_trip_gives_the_same_nodes() {
        let tape = Tape::<f64>::new();
        tape.set_record_grad_norms(true);
        let (loss, _) = sample(&tape);
        let opts = crate::GradOptions::new().retain_graph();
        loss.backward_with(&opts).unwrap();
        let text = tape.to_json();
        let back: TapeJson = text.parse().unwrap();
        assert_eq!(back.schema, TapeJson::SCHEMA);
        assert_eq!(back.nodes, tape.nodes());
        assert!(back.nodes.iter().any(|n| n.grad_norm.is_some()));
        assert!(back.nodes.iter().any(|n| !n.attributes.is_empty()));
        // Compact and pretty forms read back the same.
        assert_eq!(back.to_string().parse::<TapeJson>().unwrap(), back);
        // Filtered.
        let last: TapeJson = tape.dump().last(2).to_json().to_string().parse().unwrap();
        assert_eq!(last.nodes.len(), 2);
    }

    #[test]
    fn json_refuses_other_schemas_and_newer_versions() {
        let tape = Tape::<f32>::new();
        let _ = tape.var(1.0f32);
        let text = tape.to_json();
        assert!(matches!(
            text.replace("retrograd.tape", "other").parse::<TapeJson>(),
            Err(JsonError::Schema(_))
        ));
        assert!(matches!(
            text.replace("\"version\": 1", "\"version\": 99")
                .parse::<TapeJson>(),
            Err(JsonError::Version(99))
        ));
        let err = "{".parse::<TapeJson>().unwrap_err();
        assert!(err.to_string().contains("not a retrograd tape"));
        assert_eq!(text.parse::<TapeJson>().unwrap().dtype, "f32");
    }

    #[test]
    fn json_from_a_stream_reads_the_same_tape_and_reports_read_errors() {
        let tape = Tape::<f64>::new();
        let (_loss, _) = sample(&tape);
        let text = tape.to_json();
        let back = TapeJson::from_reader(text.as_bytes()).unwrap();
        assert_eq!(back, text.parse::<TapeJson>().unwrap());
        /// A stream that fails half-way, as a file on a failing disk.
        struct Failing<'a>(&'a [u8]);
        impl std::io::Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let half = &text.as_bytes()[..text.len() / 2];
        let err = TapeJson::from_reader(Failing(half)).unwrap_err();
        assert!(matches!(err, JsonError::Parse(_)));
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }

    /// What a mutation probe found accepted (issue 11): documents of the right shape that
    /// are not a tape.
    #[test]
    fn json_refuses_documents_that_are_not_a_tape() {
        let tape = Tape::<f64>::new();
        let x = tape.var(2.0);
        let _ = x * x;
        let good: TapeJson = tape.to_json().parse().unwrap();
        let refused = |edit: &dyn Fn(&mut TapeJson)| {
            let mut t = good.clone();
            edit(&mut t);
            let text = t.to_string();
            let err = text.parse::<TapeJson>().unwrap_err();
            // Read from a stream, the same document is refused with the same message.
            let streamed = TapeJson::from_reader(text.as_bytes()).unwrap_err();
            assert_eq!(streamed.to_string(), err.to_string());
            err
        };
        assert!(matches!(refused(&|t| t.version = 0), JsonError::Version(0)));
        let err = refused(&|t| t.dtype = "f128".into());
        assert!(err.to_string().contains("f128"), "{err}");
        assert!(matches!(
            refused(&|t| t.nodes[1].dtype = "f16".into()),
            JsonError::Invalid(_)
        ));
        let err = refused(&|t| t.nodes[1].id = 0);
        assert!(err.to_string().contains("increasing"), "{err}");
        let err = refused(&|t| t.nodes[0].inputs = vec![1]);
        assert!(err.to_string().contains("earlier"), "{err}");
        // A filtered dump (a subset of ids, inputs outside it) is still a tape.
        let ops = tape.dump().op("mul").to_json().to_string();
        assert_eq!(ops.parse::<TapeJson>().unwrap().nodes.len(), 1);
    }
}
