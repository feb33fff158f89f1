//! Content-addressed artifact storage: a blob's name is its sha256, so the
//! same bytes are stored once and any corruption is detected on read. The
//! local implementation keeps `<root>/sha256/<2 hex>/<64 hex>`, written to a
//! temporary file, synced and renamed into place.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::StoreError;

#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    /// Stores `bytes`; returns their hex sha256 and size.
    async fn put(&self, bytes: Vec<u8>) -> Result<(String, u64), StoreError>;
    /// Reads a blob back, verifying its sha256.
    async fn get(&self, sha256: &str) -> Result<Vec<u8>, StoreError>;
}

/// Artifacts in a local directory (the data dir's `artifacts/`).
pub struct DirArtifacts {
    root: PathBuf,
}

impl DirArtifacts {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, sha: &str) -> Result<PathBuf, StoreError> {
        let valid = sha.len() == 64
            && sha.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if !valid {
            return Err(StoreError::not_found("artifact", sha));
        }
        Ok(self.root.join("sha256").join(&sha[..2]).join(sha))
    }
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("artifact store {}: {e}", path.display()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[async_trait]
impl ArtifactStore for DirArtifacts {
    async fn put(&self, bytes: Vec<u8>) -> Result<(String, u64), StoreError> {
        let sha = sha256_hex(&bytes);
        let path = self.path(&sha)?;
        let size = bytes.len() as u64;
        let expected = sha.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            // Same content already stored, and still intact: nothing to do. A
            // damaged copy is replaced, so uploading again repairs it.
            if std::fs::read(&path).is_ok_and(|b| sha256_hex(&b) == expected) {
                return Ok(());
            }
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            // A unique temporary name: concurrent uploads of the same bytes never share a file.
            let tmp = dir.join(format!(".{expected}.{}.tmp", tessera_core::ids::random_lower(12)));
            let write = || -> std::io::Result<()> {
                use std::io::Write as _;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)
            };
            let result = write();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result.map_err(|e| io(&path, e))
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))??;
        Ok((sha, size))
    }

    async fn get(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(sha256)?;
        let want = sha256.to_owned();
        tokio::task::spawn_blocking(move || {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreError::not_found("artifact", &want));
                }
                Err(e) => return Err(io(&path, e)),
            };
            let got = sha256_hex(&bytes);
            if got != want {
                return Err(StoreError::Corrupt(format!(
                    "artifact {want} is corrupt: its content hashes to {got}"
                )));
            }
            Ok(bytes)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_dedup_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirArtifacts::new(dir.path());
        let (sha, size) = store.put(b"weights".to_vec()).await.unwrap();
        assert_eq!(size, 7);
        assert_eq!(sha, sha256_hex(b"weights"));
        assert_eq!(store.put(b"weights".to_vec()).await.unwrap().0, sha);
        assert_eq!(store.get(&sha).await.unwrap(), b"weights");
        let path = dir.path().join("sha256").join(&sha[..2]).join(&sha);
        std::fs::write(&path, b"tampered").unwrap();
        let err = store.get(&sha).await.unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        // Uploading the same bytes again repairs the damaged copy.
        store.put(b"weights".to_vec()).await.unwrap();
        assert_eq!(store.get(&sha).await.unwrap(), b"weights");
        assert!(matches!(store.get(&"0".repeat(64)).await, Err(StoreError::NotFound { .. })));
        assert!(matches!(store.get("../../etc/passwd").await, Err(StoreError::NotFound { .. })));
    }
}
