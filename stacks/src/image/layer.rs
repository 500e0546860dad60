//! Reproducible image layers: a sorted set of entries written as a tar with
//! fixed owners and timestamps, then gzipped with a fixed header, so the same
//! inputs always give the same `diff_id` and digest.

use std::collections::BTreeMap;
use std::io::{self, Write};

use flate2::{Compression, GzBuilder};
use tar::{EntryType, Header};

use super::oci::Digest;

/// Who owns an entry in the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
}

impl Owner {
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    mode: u32,
    owner: Owner,
}

/// Collects a layer's entries; parents of every path are added as root-owned
/// `0755` directories unless given explicitly.
#[derive(Debug, Clone)]
pub struct LayerBuilder {
    mtime: u64,
    entries: BTreeMap<String, Entry>,
}

/// A finished layer: the gzipped tar and its two digests.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The gzip-compressed tar, as uploaded.
    pub blob: Vec<u8>,
    /// sha256 of `blob`: the layer's descriptor digest.
    pub digest: Digest,
    /// sha256 of the uncompressed tar: the config's `rootfs.diff_ids` entry.
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Paths of the files in the layer, for reports and tests.
    pub files: Vec<String>,
}

impl LayerBuilder {
    /// A builder whose entries all carry `mtime` (seconds since the epoch).
    pub fn new(mtime: u64) -> Self {
        Self {
            mtime,
            entries: BTreeMap::new(),
        }
    }

    pub fn dir(&mut self, path: &str, mode: u32, owner: Owner) -> &mut Self {
        self.insert(path, Kind::Dir, mode, owner)
    }

    pub fn file(&mut self, path: &str, content: Vec<u8>, mode: u32) -> &mut Self {
        self.insert(path, Kind::File(content), mode, Owner::ROOT)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.insert(path, Kind::Symlink(target.to_owned()), 0o777, Owner::ROOT)
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(normalize(path))
    }

    fn insert(&mut self, path: &str, kind: Kind, mode: u32, owner: Owner) -> &mut Self {
        let path = normalize(path);
        let mut parent = path;
        while let Some((p, _)) = parent.rsplit_once('/') {
            self.entries.entry(p.to_owned()).or_insert(Entry {
                kind: Kind::Dir,
                mode: 0o755,
                owner: Owner::ROOT,
            });
            parent = p;
        }
        self.entries
            .insert(path.to_owned(), Entry { kind, mode, owner });
        self
    }

    /// Writes the tar in path order and gzips it.
    pub fn finish(&self) -> io::Result<Layer> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut files = Vec::new();
        for (path, entry) in &self.entries {
            let mut header = Header::new_ustar();
            header.set_mode(entry.mode);
            header.set_uid(entry.owner.uid);
            header.set_gid(entry.owner.gid);
            header.set_mtime(self.mtime);
            match &entry.kind {
                Kind::Dir => {
                    header.set_entry_type(EntryType::Directory);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), io::empty())?;
                }
                Kind::File(content) => {
                    header.set_entry_type(EntryType::Regular);
                    header.set_size(content.len() as u64);
                    tar.append_data(&mut header, path, content.as_slice())?;
                    files.push(format!("/{path}"));
                }
                Kind::Symlink(target) => {
                    header.set_entry_type(EntryType::Symlink);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)?;
                }
            }
        }
        let tar = tar.into_inner()?;
        let diff_id = Digest::sha256(&tar);
        // No file name and mtime 0 in the gzip header: only the content decides the bytes.
        let mut gz = GzBuilder::new()
            .mtime(0)
            .write(Vec::with_capacity(tar.len() / 2), Compression::default());
        gz.write_all(&tar)?;
        let blob = gz.finish()?;
        Ok(Layer {
            digest: Digest::sha256(&blob),
            diff_id,
            uncompressed_size: tar.len() as u64,
            blob,
            files,
        })
    }
}

fn normalize(path: &str) -> &str {
    path.trim_start_matches('/').trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn sample(order_reversed: bool) -> Layer {
        let mut b = LayerBuilder::new(0);
        let add = |b: &mut LayerBuilder, i: usize| match i {
            0 => {
                b.file(
                    "/etc/passwd",
                    b"root:x:0:0::/:/sbin/nologin\n".to_vec(),
                    0o644,
                );
            }
            1 => {
                b.file("/usr/local/bin/tool", vec![0x7f, b'E', b'L', b'F'], 0o755);
            }
            _ => {
                b.dir("/tmp", 0o1777, Owner::ROOT);
            }
        };
        let order: Vec<usize> = if order_reversed {
            vec![2, 1, 0]
        } else {
            vec![0, 1, 2]
        };
        for i in order {
            add(&mut b, i);
        }
        b.finish().unwrap()
    }

    #[test]
    fn same_entries_in_any_order_give_same_digests() {
        let a = sample(false);
        let b = sample(true);
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.diff_id, b.diff_id);
        assert_ne!(a.digest, a.diff_id);
        assert_eq!(a.digest, Digest::sha256(&a.blob));
    }

    #[test]
    fn tar_has_sorted_entries_parents_first_and_fixed_metadata() {
        let layer = sample(false);
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(layer.blob.as_slice())
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(Digest::sha256(&tar_bytes), layer.diff_id);
        assert_eq!(tar_bytes.len() as u64, layer.uncompressed_size);
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            seen.push((
                entry.path().unwrap().display().to_string(),
                h.mode().unwrap(),
            ));
        }
        assert_eq!(
            seen,
            vec![
                ("etc/".to_owned(), 0o755),
                ("etc/passwd".to_owned(), 0o644),
                ("tmp/".to_owned(), 0o1777),
                ("usr/".to_owned(), 0o755),
                ("usr/local/".to_owned(), 0o755),
                ("usr/local/bin/".to_owned(), 0o755),
                ("usr/local/bin/tool".to_owned(), 0o755),
            ]
        );
        // gzip header: magic, deflate, no flags (no file name), mtime 0.
        assert_eq!(&layer.blob[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
    }
}
