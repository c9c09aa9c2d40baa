//! The one-file model artifact: everything needed to score rows and to explain where the
//! model came from, in one compressed, content-addressed file.
//!
//! Layout: the magic bytes `KILNMODL`, then zstd-compressed JSON of [`ModelArtifact`]. The JSON
//! carries a `format_version` that readers check before trusting the rest. Serialization is
//! deterministic (ordered maps, shortest round-trip floats, a fixed compression level), so
//! the same training inputs give byte-identical files and therefore the same content id.
//!
//! Reading is defensive: the decompressed size is capped, so a hostile or corrupt file cannot
//! exhaust memory, and every failure names what is wrong.

use std::io::Read;

use arrow_array::RecordBatch;
use kiln_core::profile::{ColumnProfile, DatasetProfile};
use kiln_core::schema::Schema;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::evaluate::Evaluation;
use crate::features::FeaturePipeline;
use crate::learner::{Fitted, Predictions, Task};

/// First bytes of every model file.
pub const MAGIC: &[u8; 8] = b"KILNMODL";
/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest decompressed artifact accepted (1 GiB).
pub const MAX_DECOMPRESSED: u64 = 1 << 30;
const ZSTD_LEVEL: i32 = 9;

/// Where a model came from: enough to rebuild it bit for bit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub dataset: String,
    pub dataset_version: i64,
    pub snapshot_id: String,
    /// Training parameters as given (learner, its parameters, split), for the record.
    pub params: serde_json::Value,
    pub seed: u64,
    pub kiln_version: String,
    /// The source revision when trained inside a git checkout.
    pub code_version: Option<String>,
}

/// What monitoring compares live traffic against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Profile of the training rows (inputs and target).
    pub features: DatasetProfile,
    /// Profile of the model's predictions on the validation rows (the value for regressors,
    /// the predicted class for classifiers).
    pub predictions: ColumnProfile,
}

/// A trained (or imported) model with its pipeline, baseline, reference data and lineage.
#[derive(Serialize, Deserialize)]
pub struct ModelArtifact {
    pub format_version: u32,
    pub task: Task,
    pub target: String,
    /// Class labels, index = class (empty for regression).
    pub classes: Vec<String>,
    /// The input schema requests are checked against.
    pub schema: Schema,
    pub pipeline: FeaturePipeline,
    pub model: Fitted,
    /// The trivial baseline, fitted on the same rows, reported beside the model.
    pub baseline: Fitted,
    /// What was measured at training: metrics against the baselines, slices, importance.
    pub evaluation: Evaluation,
    /// Profile of the training features and of the validation predictions, for monitoring.
    pub reference: Reference,
    pub lineage: Lineage,
    /// What monitoring compares live windows with, exact; absent in imported models that had
    /// no validation data and in artifacts written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Monitoring>,
}

/// The monitoring reference of a model, and the loss model of a regressor.
#[derive(Serialize, Deserialize)]
pub struct Monitoring {
    pub reference: kiln_monitor::ModelReference,
    /// Regressors: direct loss estimation before labels arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<crate::loss::LossModel>,
}

/// Predictions for a batch, and what the pipeline noticed on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub predictions: Predictions,
    /// (column, rows whose category was not seen in training).
    pub unknown: Vec<(String, usize)>,
}

impl ModelArtifact {
    /// Scores normalized rows: the pipeline, then the model. The one scoring path of training
    /// evaluation, batch scoring and serving.
    pub fn score(&self, batch: &RecordBatch) -> Result<Scored, ModelError> {
        let x = self.pipeline.transform(batch)?;
        Ok(Scored {
            predictions: self.model.predict(&x)?,
            unknown: x.unknown,
        })
    }

    /// The file's bytes: magic, then zstd-compressed JSON.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let json = serde_json::to_vec(self)
            .map_err(|e| ModelError::Invalid(format!("cannot encode the model: {e}")))?;
        let compressed = zstd::bulk::compress(&json, ZSTD_LEVEL)
            .map_err(|e| ModelError::Invalid(format!("cannot compress the model: {e}")))?;
        let mut out = Vec::with_capacity(MAGIC.len() + compressed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&compressed);
        Ok(out)
    }

    /// Reads a model file, refusing anything that is not one this build understands.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        Self::from_bytes_limited(bytes, MAX_DECOMPRESSED)
    }

    /// [`Self::from_bytes`] with a cap on the decompressed size.
    pub fn from_bytes_limited(bytes: &[u8], limit: u64) -> Result<Self, ModelError> {
        let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| {
            ModelError::Invalid("not a Kiln model file (wrong magic bytes)".into())
        })?;
        let json = decompress_capped(body, limit)?;
        // Check the version before the rest, so a newer format gets a clear message.
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let v: Version = serde_json::from_slice(&json)
            .map_err(|e| ModelError::Invalid(format!("model file is corrupt: {e}")))?;
        if v.format_version != FORMAT_VERSION {
            return Err(ModelError::Invalid(format!(
                "model format {} is not supported by this Kiln (it reads format {FORMAT_VERSION}); use the Kiln release that wrote it or retrain",
                v.format_version
            )));
        }
        serde_json::from_slice(&json)
            .map_err(|e| ModelError::Invalid(format!("model file is corrupt: {e}")))
    }
}

/// The zstd stream `body` decompressed, refused once it expands beyond `limit` bytes. The
/// buffer never grows past `limit`: it doubles as usual but is clamped to the cap, and the
/// stream is read in chunks checked against the cap before they are kept. (Reading with
/// `take(limit + 1).read_to_end` doubled the buffer past the cap, so a 33 KB file expanding
/// to 1 GiB + 1 byte allocated 2 GiB before being refused.)
fn decompress_capped(body: &[u8], limit: u64) -> Result<Vec<u8>, ModelError> {
    let corrupt = |e: std::io::Error| ModelError::Invalid(format!("model file is corrupt: {e}"));
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut decoder = zstd::stream::read::Decoder::new(body).map_err(corrupt)?;
    let mut json = Vec::new();
    let mut chunk = [0u8; 32 << 10];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(e)),
        };
        if n > cap - json.len() {
            return Err(ModelError::Invalid(format!(
                "model file expands beyond {limit} bytes; refusing it"
            )));
        }
        if json.capacity() - json.len() < n {
            let want = json
                .capacity()
                .saturating_mul(2)
                .max(json.len() + n)
                .min(cap);
            json.reserve_exact(want - json.len());
        }
        json.extend_from_slice(&chunk[..n]);
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Transformed;
    use crate::learner::GbdtParams;

    fn artifact(seed: u64) -> ModelArtifact {
        let n = 500;
        let x: Vec<f64> = (0..n).map(|i| (i % 37) as f64).collect();
        let y: Vec<f64> = x.iter().map(|v| v * 2.0 + 1.0).collect();
        let t = Transformed {
            data: x,
            rows: n,
            features: 1,
            unknown: vec![],
        };
        let params = GbdtParams {
            seed,
            ..GbdtParams::default()
        };
        ModelArtifact {
            format_version: FORMAT_VERSION,
            task: Task::Regression,
            target: "y".into(),
            classes: vec![],
            schema: Schema::default(),
            pipeline: FeaturePipeline {
                family: crate::features::Family::Trees,
                columns: vec![],
                features: vec!["x".into()],
            },
            model: Fitted::fit_gbdt(Task::Regression, &params, &t, &y).unwrap(),
            baseline: Fitted::fit_baseline(Task::Regression, &y).unwrap(),
            evaluation: Evaluation {
                primary: "rmse".into(),
                metrics: Default::default(),
                calibration: None,
                slices: vec![],
                importance: vec![],
                data: crate::evaluate::DataSummary {
                    rows: n as u64,
                    missing_target: 0,
                    missing_time: 0,
                    split: "random".into(),
                    train_rows: n as u64,
                    valid_rows: 0,
                    train_time: None,
                    valid_time: None,
                    target: crate::evaluate::TargetSummary::of(Task::Regression, &[], &y),
                },
                cross_validation: None,
                limitations: vec![],
            },
            reference: Reference {
                features: DatasetProfile::default(),
                predictions: ColumnProfile::empty(
                    "prediction",
                    kiln_core::schema::FeatureType::Numeric,
                ),
            },
            lineage: Lineage {
                dataset: "d".into(),
                dataset_version: 1,
                snapshot_id: "0".repeat(64),
                params: serde_json::to_value(&params).unwrap(),
                seed,
                kiln_version: kiln_core::KILN_VERSION.into(),
                code_version: None,
            },
            monitoring: None,
        }
    }

    #[test]
    fn same_inputs_give_byte_identical_files_that_load_back() {
        let a = artifact(7).to_bytes().unwrap();
        let b = artifact(7).to_bytes().unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with(MAGIC));
        let back = ModelArtifact::from_bytes(&a).unwrap();
        assert_eq!(
            back.to_bytes().unwrap(),
            a,
            "a loaded model re-encodes to the same bytes"
        );
        assert_eq!(back.lineage.seed, 7);
    }

    /// The largest single allocation made by this thread since `largest_reset` (the unit
    /// tests' allocator notes it; other threads' tests do not disturb it).
    mod largest {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static LARGEST: Cell<usize> = const { Cell::new(0) };
        }

        fn note(size: usize) {
            let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
        }

        pub fn reset() {
            LARGEST.with(|c| c.set(0));
        }

        pub fn get() -> usize {
            LARGEST.with(Cell::get)
        }

        struct Noting;

        // SAFETY: every call is forwarded to the system allocator unchanged.
        unsafe impl GlobalAlloc for Noting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                note(layout.size());
                unsafe { System.alloc(layout) }
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                note(layout.size());
                unsafe { System.alloc_zeroed(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                unsafe { System.dealloc(ptr, layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                note(new_size);
                unsafe { System.realloc(ptr, layout, new_size) }
            }
        }

        #[global_allocator]
        static NOTING: Noting = Noting;
    }

    /// fuzz/regressions/model_artifact/zstd-bomb-1gib-plus-1: a 33 KB file that expands to
    /// 1 GiB + 1 byte made a 2 GiB allocation before being refused. Here the same shape at a
    /// 1 MiB cap: refused, and no allocation beyond the cap.
    #[test]
    fn a_file_one_byte_over_the_cap_is_refused_without_allocating_past_it() {
        let limit: u64 = 1 << 20;
        let mut over = MAGIC.to_vec();
        over.extend(zstd::bulk::compress(&vec![0u8; limit as usize + 1], 1).unwrap());
        largest::reset();
        let e = ModelArtifact::from_bytes_limited(&over, limit)
            .err()
            .unwrap();
        assert!(e.to_string().contains("refusing"), "{e}");
        assert!(
            largest::get() <= limit as usize,
            "largest allocation {} bytes, the cap is {limit}",
            largest::get()
        );

        // Exactly at the cap: read whole (and then refused only as not being JSON).
        let mut at = MAGIC.to_vec();
        at.extend(zstd::bulk::compress(&vec![b' '; limit as usize], 1).unwrap());
        let e = ModelArtifact::from_bytes_limited(&at, limit).err().unwrap();
        assert!(e.to_string().contains("corrupt"), "{e}");
        assert!(!e.to_string().contains("refusing"), "{e}");
    }

    #[test]
    fn foreign_corrupt_newer_and_bomb_files_are_refused() {
        let good = artifact(1).to_bytes().unwrap();
        let e = ModelArtifact::from_bytes(b"PAR1 not a model")
            .err()
            .unwrap();
        assert!(e.to_string().contains("magic"), "{e}");
        let mut cut = good.clone();
        cut.truncate(good.len() / 2);
        assert!(
            ModelArtifact::from_bytes(&cut)
                .err()
                .unwrap()
                .to_string()
                .contains("corrupt")
        );

        let mut newer = serde_json::to_value(artifact(1)).unwrap();
        newer["format_version"] = serde_json::json!(FORMAT_VERSION + 1);
        let mut bytes = MAGIC.to_vec();
        bytes.extend(zstd::bulk::compress(&serde_json::to_vec(&newer).unwrap(), 3).unwrap());
        let e = ModelArtifact::from_bytes(&bytes).err().unwrap();
        assert!(e.to_string().contains("not supported"), "{e}");

        // 64 MiB of zeros compress to a few KiB: with a 1 MiB cap, refused without expanding
        // more than the cap (the real cap is 1 GiB; the mechanism is the same).
        let mut bomb = MAGIC.to_vec();
        bomb.extend(zstd::bulk::compress(&vec![0u8; 64 << 20], 1).unwrap());
        assert!(bomb.len() < 64 << 10);
        let e = ModelArtifact::from_bytes_limited(&bomb, 1 << 20)
            .err()
            .unwrap();
        assert!(e.to_string().contains("refusing"), "{e}");
    }
}
