//! Checkpoints: a [`ParamStore`] saved as a safetensors file keyed by parameter name.
//!
//! [safetensors](https://huggingface.co/docs/safetensors) is a plain format (an 8-byte
//! header length, a JSON header of names, dtypes, shapes and offsets, then raw
//! little-endian data) that other frameworks read and write, so a retrograd checkpoint can
//! be inspected or produced elsewhere. `f32` stores save as `F32`, `f64` stores as `F64`.
//!
//! Loading into an existing store ([`load`], [`load_bytes`]) is all-or-nothing: the file
//! is parsed and every tensor is checked against the store (same names, no more, no
//! fewer; same dtype; same shape) before a single value is written. On any error the
//! store is untouched and the [`CheckpointError`] says which name and which shapes.
//!
//! ```
//! use ndarray::{ArrayD, IxDyn};
//! use retrograd_nn::{ParamStore, checkpoint};
//!
//! let mut store = ParamStore::<f32>::new();
//! store.insert("w", ArrayD::from_elem(IxDyn(&[2, 3]), 0.5));
//! let bytes = checkpoint::to_bytes(&store).unwrap();
//!
//! let mut other = ParamStore::<f32>::new();
//! other.insert("w", ArrayD::zeros(IxDyn(&[2, 3])));
//! checkpoint::load_bytes(&mut other, &bytes).unwrap();
//! assert_eq!(other, store);
//! ```

use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::scalar::{Scalar, cast, to_f64};
use crate::store::ParamStore;

/// Header metadata key holding the store's insertion order (a JSON array of the names, so
/// that any name survives), so that [`load_new`] rebuilds the store in the order it was
/// saved. Files without it (made elsewhere) load in name order.
const ORDER_KEY: &str = "retrograd.param_order.json";

/// The key earlier versions wrote: the names joined by newlines (still read).
const LEGACY_ORDER_KEY: &str = "retrograd.param_order";

/// The header key safetensors reserves for metadata: no tensor may have this name.
const RESERVED_NAME: &str = "__metadata__";

/// safetensors' own limit on the header's size; larger headers are refused by it.
const MAX_HEADER_BYTES: usize = 100_000_000;

/// Why a checkpoint could not be saved or loaded. When loading into a store, the store is
/// unchanged.
///
/// The functions that take a path ([`save`], [`load`], [`load_new`]) name the file in every
/// error: reading or writing it fails with [`Io`](CheckpointError::Io), and anything else
/// comes wrapped in [`InFile`](CheckpointError::InFile); [`cause`](CheckpointError::cause)
/// unwraps that to the reason.
///
/// `{:?}` prints the same text as `{}`: an error that reaches the end of `main` through `?`
/// is printed with `Debug`, and there the message is what helps.
///
/// ```
/// use retrograd_nn::{ParamStore, checkpoint};
///
/// let path = std::env::temp_dir().join("retrograd-doc-corrupt.safetensors");
/// std::fs::write(&path, b"not a checkpoint")?;
/// let err = checkpoint::load_new::<f32>(&path).unwrap_err();
/// let shown = format!("{err:?}"); // what `fn main() -> Result<..>` prints
/// assert!(shown.starts_with(&format!("checkpoint {}: not a valid safetensors", path.display())));
/// assert!(matches!(err.cause(), checkpoint::CheckpointError::Format(_)));
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The bytes are not a valid safetensors file (truncated, corrupt header, offsets that
    /// do not match the shapes, ...).
    Format(SafeTensorError),
    /// The store's element type has no safetensors dtype here (only `f32` and `f64` do).
    UnsupportedElementType {
        /// The Rust type's name.
        type_name: &'static str,
    },
    /// A tensor's dtype differs from the store's element type (no silent conversion).
    WrongDtype {
        /// The parameter's name.
        name: String,
        /// The dtype the store needs.
        expected: Dtype,
        /// The dtype in the file.
        found: Dtype,
    },
    /// A tensor's shape differs from the parameter's.
    ShapeMismatch {
        /// The parameter's name.
        name: String,
        /// The parameter's shape in the store.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor the file describes cannot exist here: its offsets run past the file, or its
    /// extents multiply past what an array can index (a valid-by-spec zero-element tensor
    /// of shape `[0, 2^63]`, say).
    InvalidTensor {
        /// The tensor's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A parameter is named `__metadata__`, which the safetensors format reserves: such a
    /// file could be written but never read back.
    ReservedName {
        /// The offending name.
        name: String,
    },
    /// The file's names differ from the store's.
    NameMismatch {
        /// Parameters of the store that the file lacks (sorted).
        missing: Vec<String>,
        /// Tensors in the file that the store does not have (sorted).
        unexpected: Vec<String>,
    },
    /// The file `path` was read or written, but its contents (or the store) were refused.
    InFile {
        /// The file.
        path: PathBuf,
        /// Why (never `Io` or `InFile` itself).
        source: Box<CheckpointError>,
    },
}

impl CheckpointError {
    /// The reason, without the file: the error inside [`InFile`](CheckpointError::InFile),
    /// or `self` for the others.
    pub fn cause(&self) -> &CheckpointError {
        match self {
            CheckpointError::InFile { source, .. } => source,
            other => other,
        }
    }

    /// The file the error is about, when a path was given.
    pub fn path(&self) -> Option<&Path> {
        match self {
            CheckpointError::Io { path, .. } | CheckpointError::InFile { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Names `path` in an error made from bytes alone.
    fn in_file(self, path: &Path) -> Self {
        match self {
            e @ (CheckpointError::Io { .. } | CheckpointError::InFile { .. }) => e,
            e => CheckpointError::InFile {
                path: path.to_owned(),
                source: Box::new(e),
            },
        }
    }
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Io { path, source } => {
                write!(f, "checkpoint {}: {source}", path.display())
            }
            CheckpointError::Format(e) => write!(f, "not a valid safetensors checkpoint: {e}"),
            CheckpointError::UnsupportedElementType { type_name } => write!(
                f,
                "checkpoints support f32 and f64 parameters, not {type_name}"
            ),
            CheckpointError::WrongDtype {
                name,
                expected,
                found,
            } => write!(
                f,
                "checkpoint tensor {name:?} has dtype {found} but the store holds {expected}"
            ),
            CheckpointError::ShapeMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "checkpoint tensor {name:?} has shape {found:?} but the parameter has shape {expected:?}"
            ),
            CheckpointError::InvalidTensor { name, reason } => {
                write!(f, "checkpoint tensor {name:?} is invalid: {reason}")
            }
            CheckpointError::ReservedName { name } => write!(
                f,
                "a parameter is named {name:?}, which the safetensors format reserves; rename it"
            ),
            CheckpointError::NameMismatch {
                missing,
                unexpected,
            } => {
                write!(f, "checkpoint names differ from the store's:")?;
                if !missing.is_empty() {
                    write!(f, " missing {missing:?}")?;
                }
                if !unexpected.is_empty() {
                    write!(f, " unexpected {unexpected:?}")?;
                }
                Ok(())
            }
            CheckpointError::InFile { path, source } => {
                write!(f, "checkpoint {}: {source}", path.display())
            }
        }
    }
}

impl fmt::Debug for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::Io { source, .. } => Some(source),
            CheckpointError::Format(e) => Some(e),
            CheckpointError::InFile { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl From<SafeTensorError> for CheckpointError {
    fn from(e: SafeTensorError) -> Self {
        CheckpointError::Format(e)
    }
}

/// The safetensors dtype of `T`, or an error for element types other than f32/f64.
fn dtype_of<T: Scalar>() -> Result<Dtype, CheckpointError> {
    let id = TypeId::of::<T>();
    if id == TypeId::of::<f32>() {
        Ok(Dtype::F32)
    } else if id == TypeId::of::<f64>() {
        Ok(Dtype::F64)
    } else {
        Err(CheckpointError::UnsupportedElementType {
            type_name: std::any::type_name::<T>(),
        })
    }
}

/// Little-endian bytes of an array in logical (row-major) order, whatever its layout.
fn encode<T: Scalar>(a: &ArrayD<T>, dtype: Dtype) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len() * dtype.bitsize() / 8);
    for &x in a.iter() {
        // Exact: T is f32 when dtype is F32 and f64 when it is F64.
        if dtype == Dtype::F32 {
            out.extend_from_slice(&(to_f64(x) as f32).to_le_bytes());
        } else {
            out.extend_from_slice(&to_f64(x).to_le_bytes());
        }
    }
    out
}

/// Decodes a validated tensor view (dtype and length already checked) into an array.
fn decode<T: Scalar>(name: &str, view: &TensorView<'_>) -> Result<ArrayD<T>, CheckpointError> {
    let data = view.data();
    let values: Vec<T> = if view.dtype() == Dtype::F32 {
        data.chunks_exact(4)
            .map(|c| cast(f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                cast(f64::from_le_bytes(b))
            })
            .collect()
    };
    ArrayD::from_shape_vec(IxDyn(view.shape()), values).map_err(|e| {
        CheckpointError::InvalidTensor {
            name: name.to_owned(),
            reason: format!("shape {:?}: {e}", view.shape()),
        }
    })
}

/// Refuses, before safetensors reads them, headers it would mishandle: data offsets near
/// `2^64` (in debug builds safetensors 0.8 overflows adding them to the header's length
/// and panics) and shapes whose nonzero extents multiply past `isize::MAX` (no array can have
/// them, even with zero elements). Anything else malformed is left to safetensors to
/// report.
fn check_header(bytes: &[u8]) -> Result<(), CheckpointError> {
    let Some(Ok(len)) = bytes.get(..8).map(<[u8; 8]>::try_from) else {
        return Ok(());
    };
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER_BYTES as u64 || 8 + header_len as usize > bytes.len() {
        return Ok(());
    }
    let header_end = 8 + header_len as usize;
    let Ok(serde_json::Value::Object(header)) = serde_json::from_slice(&bytes[8..header_end])
    else {
        return Ok(());
    };
    // safetensors adds the last offset to the header's length unchecked.
    let max_offset = (usize::MAX - header_end) as u64;
    for (name, entry) in header.iter().filter(|(name, _)| *name != RESERVED_NAME) {
        let invalid = |reason: String| CheckpointError::InvalidTensor {
            name: name.clone(),
            reason,
        };
        let numbers = |key: &str| -> Vec<u64> {
            let list = entry.get(key).and_then(serde_json::Value::as_array);
            list.map_or_else(Vec::new, |l| l.iter().filter_map(|v| v.as_u64()).collect())
        };
        if let Some(&end) = numbers("data_offsets").iter().max()
            && end > max_offset
        {
            return Err(invalid(format!(
                "its data offset {end} is beyond any file's size"
            )));
        }
        let shape = numbers("shape");
        let fits = (shape.iter().filter(|&&d| d != 0))
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .is_some_and(|n| n <= isize::MAX as u64);
        if !fits {
            return Err(invalid(format!(
                "its shape {shape:?} has more elements than an array can index"
            )));
        }
    }
    Ok(())
}

/// Serialises `store` to safetensors bytes.
pub fn to_bytes<T: Scalar>(store: &ParamStore<T>) -> Result<Vec<u8>, CheckpointError> {
    let dtype = dtype_of::<T>()?;
    if store.contains(RESERVED_NAME) {
        return Err(CheckpointError::ReservedName {
            name: RESERVED_NAME.to_owned(),
        });
    }
    let buffers: Vec<(&str, Vec<u8>, &[usize])> = store
        .iter()
        .map(|(name, a)| (name, encode(a, dtype), a.shape()))
        .collect();
    let views = buffers
        .iter()
        .map(|(name, bytes, shape)| Ok((*name, TensorView::new(dtype, shape.to_vec(), bytes)?)))
        .collect::<Result<Vec<_>, SafeTensorError>>()?;
    let order = serde_json::Value::from(store.names().collect::<Vec<_>>()).to_string();
    let meta = HashMap::from([(ORDER_KEY.to_string(), order)]);
    Ok(safetensors::serialize(views, Some(meta))?)
}

/// Saves `store` to the safetensors file `path` (created or overwritten).
///
/// The bytes go to a temporary file beside `path` (named uniquely, so concurrent saves do
/// not collide), are flushed to the disk, and the file is then renamed over `path` and the
/// directory flushed: a crash or power loss in the middle of a save leaves the previous
/// checkpoint intact rather than truncated.
pub fn save<T: Scalar>(
    store: &ParamStore<T>,
    path: impl AsRef<Path>,
) -> Result<(), CheckpointError> {
    use std::io::Write;
    static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = path.as_ref();
    let bytes = to_bytes(store).map_err(|e| e.in_file(path))?;
    let mut tmp = path.as_os_str().to_owned();
    let serial = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp.push(format!(".{}.{serial}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let io = |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    };
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(source));
    }
    sync_parent(path).map_err(io)
}

/// Flushes the directory holding `path`, so that a rename into it survives power loss
/// (on platforms where a directory can be opened; elsewhere there is nothing to flush).
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::File::open(dir) {
        Ok(d) => d.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Loads safetensors bytes into `store`, replacing every parameter's value.
///
/// The file must hold exactly the store's names, each with the store's dtype and the
/// parameter's shape. Everything is checked before anything is written: on error the
/// store is unchanged.
pub fn load_bytes<T: Scalar>(
    store: &mut ParamStore<T>,
    bytes: &[u8],
) -> Result<(), CheckpointError> {
    let dtype = dtype_of::<T>()?;
    check_header(bytes)?;
    let file = SafeTensors::deserialize(bytes)?;

    let file_names: HashSet<&str> = file.names().into_iter().collect();
    let mut missing: Vec<String> = store
        .names()
        .filter(|n| !file_names.contains(n))
        .map(str::to_owned)
        .collect();
    let mut unexpected: Vec<String> = file_names
        .iter()
        .filter(|n| !store.contains(n))
        .map(|n| n.to_string())
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        missing.sort();
        unexpected.sort();
        return Err(CheckpointError::NameMismatch {
            missing,
            unexpected,
        });
    }

    let mut views = Vec::with_capacity(store.len());
    for (name, param) in store.iter() {
        let view = file.tensor(name)?;
        if view.dtype() != dtype {
            return Err(CheckpointError::WrongDtype {
                name: name.to_owned(),
                expected: dtype,
                found: view.dtype(),
            });
        }
        if view.shape() != param.shape() {
            return Err(CheckpointError::ShapeMismatch {
                name: name.to_owned(),
                expected: param.shape().to_vec(),
                found: view.shape().to_vec(),
            });
        }
        views.push(view);
    }

    // Decode everything, then write: on any error the store is unchanged.
    let names: Vec<String> = store.names().map(str::to_owned).collect();
    let values = (names.iter().zip(&views))
        .map(|(name, view)| decode(name, view))
        .collect::<Result<Vec<ArrayD<T>>, _>>()?;
    for ((_, param), value) in store.iter_mut().zip(values) {
        *param = value;
    }
    Ok(())
}

/// Loads the safetensors file `path` into `store`; see [`load_bytes`].
pub fn load<T: Scalar>(
    store: &mut ParamStore<T>,
    path: impl AsRef<Path>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    let bytes = read(path)?;
    load_bytes(store, &bytes).map_err(|e| e.in_file(path))
}

/// Builds a new store from safetensors bytes: every tensor, in the order it was saved
/// (name order for files written elsewhere). Every tensor must have the dtype of `T`.
pub fn new_from_bytes<T: Scalar>(bytes: &[u8]) -> Result<ParamStore<T>, CheckpointError> {
    let dtype = dtype_of::<T>()?;
    check_header(bytes)?;
    let file = SafeTensors::deserialize(bytes)?;
    let (_, meta) = SafeTensors::read_metadata(bytes)?;

    let mut names: Vec<String> = file.names().into_iter().map(str::to_owned).collect();
    names.sort_unstable();
    // Use the saved order if it is a permutation of the file's names.
    if let Some(mut saved) = meta.metadata().as_ref().and_then(saved_order) {
        let mut sorted = saved.clone();
        sorted.sort_unstable();
        if sorted == names {
            names = std::mem::take(&mut saved);
        }
    }

    let mut views = Vec::with_capacity(names.len());
    for name in &names {
        let view = file.tensor(name)?;
        if view.dtype() != dtype {
            return Err(CheckpointError::WrongDtype {
                name: name.to_string(),
                expected: dtype,
                found: view.dtype(),
            });
        }
        views.push(view);
    }
    let values = (names.iter().zip(&views))
        .map(|(name, view)| Ok((name.clone(), decode::<T>(name, view)?)))
        .collect::<Result<Vec<(String, ArrayD<T>)>, CheckpointError>>()?;
    Ok(values.into_iter().collect())
}

/// The insertion order saved in a header's metadata (either key), if any.
fn saved_order(meta: &HashMap<String, String>) -> Option<Vec<String>> {
    if let Some(json) = meta.get(ORDER_KEY) {
        return serde_json::from_str(json).ok();
    }
    let legacy = meta.get(LEGACY_ORDER_KEY)?;
    Some(if legacy.is_empty() {
        Vec::new()
    } else {
        legacy.split('\n').map(str::to_owned).collect()
    })
}

/// Builds a new store from the safetensors file `path`; see [`new_from_bytes`].
pub fn load_new<T: Scalar>(path: impl AsRef<Path>) -> Result<ParamStore<T>, CheckpointError> {
    let path = path.as_ref();
    let bytes = read(path)?;
    new_from_bytes(&bytes).map_err(|e| e.in_file(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{Init, rng_from_seed};
    use ndarray::{Array2, ShapeBuilder};

    /// A unique path in the temp dir, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            TempFile(std::env::temp_dir().join(format!(
                "retrograd-nn-{}-{tag}-{n}.safetensors",
                std::process::id()
            )))
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn sample_store<T: Scalar>(seed: u64) -> ParamStore<T> {
        let mut rng = rng_from_seed(seed);
        let mut s = ParamStore::new();
        // Deliberately not in name order, with a scalar, an empty tensor and a 4-d one.
        s.insert(
            "z.weight",
            Init::XavierNormal { gain: 1.0 }.sample(&[4, 3], &mut rng),
        );
        s.insert(
            "a.bias",
            Init::Normal {
                mean: 0.0,
                std: 1.0,
            }
            .sample(&[4], &mut rng),
        );
        s.insert("scale", Init::Constant(2.5).sample(&[], &mut rng));
        s.insert("empty", Init::Zeros.sample(&[0, 3], &mut rng));
        s.insert(
            "conv",
            Init::kaiming_normal(crate::init::Nonlinearity::Relu).sample(&[2, 3, 2, 2], &mut rng),
        );
        s
    }

    fn zeroed<T: Scalar>(s: &ParamStore<T>) -> ParamStore<T> {
        s.iter()
            .map(|(n, v)| (n, ArrayD::zeros(v.raw_dim())))
            .collect()
    }

    fn round_trip<T: Scalar>() {
        let store = sample_store::<T>(3);
        let file = TempFile::new("rt");
        save(&store, &file.0).unwrap();
        let mut target = zeroed(&store);
        load(&mut target, &file.0).unwrap();
        assert_eq!(target, store);
        let fresh: ParamStore<T> = load_new(&file.0).unwrap();
        assert_eq!(fresh, store);
        assert_eq!(
            fresh.names().collect::<Vec<_>>(),
            ["z.weight", "a.bias", "scale", "empty", "conv"]
        );
    }

    #[test]
    fn round_trip_f32() {
        round_trip::<f32>();
    }

    #[test]
    fn round_trip_f64() {
        round_trip::<f64>();
    }

    #[test]
    fn non_standard_layout_saves_in_logical_order() {
        let a = Array2::from_shape_vec((2, 3).f(), vec![1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
        let mut s = ParamStore::new();
        s.insert("w", a.clone().into_dyn());
        let back: ParamStore<f64> = new_from_bytes(&to_bytes(&s).unwrap()).unwrap();
        assert_eq!(back.get("w").unwrap(), &a.into_dyn());
        assert_eq!(
            back.get("w").unwrap().as_slice(),
            Some(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0][..])
        );
    }

    /// Loads `bytes` into a copy of `target`, asserting that it fails and changes nothing.
    fn refused(target: &ParamStore<f32>, bytes: &[u8]) -> CheckpointError {
        let mut t = target.clone();
        let err = load_bytes(&mut t, bytes).unwrap_err();
        assert_eq!(&t, target, "store changed by a refused load: {err}");
        err
    }

    #[test]
    fn truncated_and_corrupt_files_are_refused() {
        let store = sample_store::<f32>(1);
        let target = zeroed(&store);
        let bytes = to_bytes(&store).unwrap();
        for cut in [0, 4, 8, 20, bytes.len() - 1] {
            let err = refused(&target, &bytes[..cut]);
            assert!(
                matches!(err, CheckpointError::Format(_)),
                "cut {cut}: {err}"
            );
        }
        let mut garbled = bytes.clone();
        garbled[10] = b'#'; // inside the JSON header
        assert!(matches!(
            refused(&target, &garbled),
            CheckpointError::Format(_)
        ));
        assert!(matches!(
            refused(&target, b"not a checkpoint"),
            CheckpointError::Format(_)
        ));
        assert!(matches!(
            new_from_bytes::<f32>(&bytes[..30]),
            Err(CheckpointError::Format(_))
        ));
    }

    #[test]
    fn wrong_dtype_is_refused() {
        let store64 = sample_store::<f64>(1);
        let target = zeroed(&sample_store::<f32>(1));
        let err = refused(&target, &to_bytes(&store64).unwrap());
        assert!(
            matches!(
                &err,
                CheckpointError::WrongDtype {
                    expected: Dtype::F32,
                    found: Dtype::F64,
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            new_from_bytes::<f32>(&to_bytes(&store64).unwrap()),
            Err(CheckpointError::WrongDtype { .. })
        ));
    }

    #[test]
    fn wrong_shape_is_refused_naming_the_parameter() {
        let store = sample_store::<f32>(1);
        let mut target = zeroed(&store);
        target.insert("a.bias", ArrayD::zeros(IxDyn(&[5])));
        let err = refused(&target, &to_bytes(&store).unwrap());
        match &err {
            CheckpointError::ShapeMismatch {
                name,
                expected,
                found,
            } => {
                assert_eq!(
                    (name.as_str(), &expected[..], &found[..]),
                    ("a.bias", &[5][..], &[4][..])
                );
            }
            other => panic!("wrong error: {other}"),
        }
        assert_eq!(
            err.to_string(),
            r#"checkpoint tensor "a.bias" has shape [4] but the parameter has shape [5]"#
        );
    }

    #[test]
    fn missing_and_extra_names_are_refused() {
        let store = sample_store::<f32>(1);
        let bytes = to_bytes(&store).unwrap();

        let mut more = zeroed(&store);
        more.insert("head.weight", ArrayD::zeros(IxDyn(&[1])));
        match refused(&more, &bytes) {
            CheckpointError::NameMismatch {
                missing,
                unexpected,
            } => {
                assert_eq!(missing, ["head.weight"]);
                assert!(unexpected.is_empty());
            }
            other => panic!("wrong error: {other}"),
        }

        let fewer: ParamStore<f32> = zeroed(&store)
            .iter()
            .filter(|(n, _)| *n != "scale")
            .map(|(n, v)| (n, v.clone()))
            .collect();
        match refused(&fewer, &bytes) {
            CheckpointError::NameMismatch {
                missing,
                unexpected,
            } => {
                assert!(missing.is_empty());
                assert_eq!(unexpected, ["scale"]);
            }
            other => panic!("wrong error: {other}"),
        }
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let file = TempFile::new("absent");
        let mut s = sample_store::<f64>(0);
        let err = load(&mut s, &file.0).unwrap_err();
        assert!(matches!(err, CheckpointError::Io { .. }));
        assert!(std::error::Error::source(&err).is_some());
        assert!(matches!(
            load_new::<f64>(&file.0),
            Err(CheckpointError::Io { .. })
        ));
    }

    #[test]
    fn errors_from_a_file_name_it_and_print_their_message_through_debug() {
        let file = TempFile::new("corrupt");
        std::fs::write(&file.0, b"garbage").unwrap();
        let mut s = sample_store::<f32>(0);
        let before = s.clone();
        let err = load(&mut s, &file.0).unwrap_err();
        assert_eq!(s, before);
        assert_eq!(err.path(), Some(file.0.as_path()));
        assert!(matches!(err.cause(), CheckpointError::Format(_)), "{err}");
        let shown = format!("{err:?}");
        assert_eq!(shown, err.to_string());
        assert!(
            shown.starts_with(&format!(
                "checkpoint {}: not a valid safetensors checkpoint",
                file.0.display()
            )),
            "{shown}"
        );

        // A well-formed file for another model: the names, and the file, are reported.
        save(&sample_store::<f32>(0), &file.0).unwrap();
        let mut other = ParamStore::<f32>::new();
        other.insert("w", ArrayD::zeros(IxDyn(&[1])));
        let err = load(&mut other, &file.0).unwrap_err();
        assert!(
            matches!(err.cause(), CheckpointError::NameMismatch { .. }),
            "{err}"
        );
        let shown = format!("{err:?}");
        assert!(
            shown.contains(&file.0.display().to_string()) && shown.contains("missing [\"w\"]"),
            "{shown}"
        );
        let err = load_new::<f64>(&file.0).unwrap_err();
        assert!(matches!(err.cause(), CheckpointError::WrongDtype { .. }));
        assert!(err.to_string().contains(&file.0.display().to_string()));
    }

    #[test]
    fn empty_store_round_trips() {
        let s = ParamStore::<f64>::new();
        let back: ParamStore<f64> = new_from_bytes(&to_bytes(&s).unwrap()).unwrap();
        assert!(back.is_empty());
    }

    /// A safetensors file from a header and a data section, as an attacker would write it.
    fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn a_zero_element_tensor_with_an_overflowing_shape_is_refused() {
        let bytes = raw_file(
            r#"{"t":{"dtype":"F32","shape":[0,9223372036854775808],"data_offsets":[0,0]}}"#,
            &[],
        );
        let err = new_from_bytes::<f32>(&bytes).unwrap_err();
        assert!(
            matches!(&err, CheckpointError::InvalidTensor { name, .. } if name == "t"),
            "{err}"
        );
        let mut store = ParamStore::<f32>::new();
        store.insert("t", ArrayD::zeros(vec![0, 1]));
        assert!(load_bytes(&mut store, &bytes).is_err());
        assert_eq!(store.get("t").unwrap().shape(), &[0, 1]);
    }

    /// Eight tensors of `2^61 − 1` bytes each: every offset is consistent with its shape,
    /// but the last one plus the header's length passes `2^64`, which safetensors 0.8 adds
    /// unchecked (a panic in debug builds).
    #[test]
    fn offsets_that_sum_past_two_to_the_64_are_refused_without_panicking() {
        let size = (1u64 << 61) - 1;
        let entries: Vec<String> = (0..8u64)
            .map(|i| {
                format!(
                    r#""t{i}":{{"dtype":"U8","shape":[{size}],"data_offsets":[{},{}]}}"#,
                    i * size,
                    (i + 1) * size
                )
            })
            .collect();
        let bytes = raw_file(&format!("{{{}}}", entries.join(",")), &[0; 8]);
        assert!(matches!(
            new_from_bytes::<f32>(&bytes),
            Err(CheckpointError::InvalidTensor { .. })
        ));
        let mut store = ParamStore::<f32>::new();
        store.insert("t0", ArrayD::zeros(vec![1]));
        assert!(load_bytes(&mut store, &bytes).is_err());
        assert_eq!(store.get("t0").unwrap(), &ArrayD::<f32>::zeros(vec![1]));
    }

    #[test]
    fn the_reserved_name_is_refused_at_save() {
        let mut store = ParamStore::<f32>::new();
        store.insert("__metadata__", ArrayD::zeros(vec![2]));
        let err = to_bytes(&store).unwrap_err();
        assert!(matches!(err, CheckpointError::ReservedName { .. }), "{err}");
        assert!(err.to_string().contains("__metadata__"));
    }

    #[test]
    fn names_with_newlines_keep_their_order() {
        let mut store = ParamStore::<f64>::new();
        for name in ["z\nlast", "a", "m\n"] {
            store.insert(name, ArrayD::zeros(vec![1]));
        }
        let back: ParamStore<f64> = new_from_bytes(&to_bytes(&store).unwrap()).unwrap();
        assert!(back.names().eq(store.names()));
    }

    #[test]
    fn files_from_before_the_json_order_still_load_in_order() {
        let header = r#"{"__metadata__":{"retrograd.param_order":"z\na"},"a":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"z":{"dtype":"F64","shape":[],"data_offsets":[8,16]}}"#;
        let back: ParamStore<f64> = new_from_bytes(&raw_file(header, &[0; 16])).unwrap();
        assert!(back.names().eq(["z", "a"]));
    }

    #[test]
    fn load_errors_name_the_file() {
        let file = TempFile::new("garbage");
        std::fs::write(&file.0, b"not a checkpoint").unwrap();
        let err = load_new::<f32>(&file.0).unwrap_err();
        assert!(
            err.to_string().contains(&*file.0.to_string_lossy()),
            "{err}"
        );
        assert!(matches!(err.cause(), CheckpointError::Format(_)));
        let mut store = sample_store::<f32>(1);
        let err = load(&mut store, &file.0).unwrap_err();
        assert!(
            err.to_string().contains(&*file.0.to_string_lossy()),
            "{err}"
        );
    }

    #[test]
    fn concurrent_saves_to_one_path_leave_one_whole_checkpoint() {
        let file = TempFile::new("race");
        let stores = [sample_store::<f64>(1), sample_store::<f64>(2)];
        std::thread::scope(|scope| {
            for store in &stores {
                let path = &file.0;
                scope.spawn(move || {
                    for _ in 0..20 {
                        save(store, path).unwrap();
                    }
                });
            }
        });
        let back: ParamStore<f64> = load_new(&file.0).unwrap();
        assert!(stores.iter().any(|s| s.iter().eq(back.iter())));
        let dir = file.0.parent().unwrap();
        let stem = file.0.file_name().unwrap().to_string_lossy().into_owned();
        let leftovers = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(&stem) && n.ends_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
