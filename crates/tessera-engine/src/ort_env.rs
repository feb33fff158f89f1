//! Loads the ONNX Runtime shared library once per process. The library comes
//! from the PyPI `onnxruntime` wheel (`tessera models fetch` puts it in the
//! model cache) or from `ORT_DYLIB_PATH`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::EngineError;

static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// The library to load: `ORT_DYLIB_PATH` if set, else the one in `cache`.
pub fn library_path(cache: &Path) -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) => PathBuf::from(p),
        None => cache.join(crate::fetch::ORT_DIR).join(crate::fetch::ORT_LIBRARY),
    }
}

/// Loads the library at `path` (only the first call's path counts) and
/// returns the process-wide environment.
pub fn init(path: &Path) -> Result<&'static ort::environment::Environment, EngineError> {
    let result = ENV.get_or_init(|| {
        // Checked first: ort may hang rather than fail on a missing library.
        if !path.is_file() {
            return Err(format!(
                "the ONNX Runtime library {} is missing; run `tessera models fetch` or set ORT_DYLIB_PATH",
                path.display()
            ));
        }
        ort::init_from(path)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?
            .with_name("tessera")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    });
    match result {
        Ok(env) => Ok(env),
        Err(reason) => {
            Err(EngineError::NotReady { model: "onnxruntime".into(), reason: reason.clone() })
        }
    }
}

/// A session builder with Tessera's settings: full graph optimisation,
/// `intra_threads` intra-op threads without spinning (spinning threads hurt on
/// small machines), one inter-op thread.
pub fn session_builder(
    env: &ort::environment::Environment,
    intra_threads: usize,
) -> Result<ort::session::builder::SessionBuilder, EngineError> {
    let err =
        |e: ort::Error<ort::session::builder::SessionBuilder>| EngineError::Runtime(e.to_string());
    ort::session::Session::builder(env)
        .map_err(|e| EngineError::Runtime(e.to_string()))?
        .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Level3)
        .map_err(err)?
        .with_intra_threads(intra_threads.max(1))
        .map_err(err)?
        .with_inter_threads(1)
        .map_err(err)?
        .with_intra_op_spinning(false)
        .map_err(err)
}
