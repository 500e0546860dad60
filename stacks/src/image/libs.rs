//! Finds the shared libraries a dynamically linked binary needs at run time
//! (the dynamic loader, libc, libm, libgcc_s, ...), so the image can carry
//! them instead of a distribution base image.
//!
//! It asks the host's `ldd`, which resolves `DT_NEEDED` entries exactly as the
//! loader will (ld.so.cache, RUNPATH, multiarch directories); the image then
//! holds each library at the path `ldd` reported, where the loader's built-in
//! search path finds it without a cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;

/// The absolute paths of the libraries `binary` loads, the loader included;
/// empty for a static binary.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let out = Command::new("ldd")
        .arg(binary)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| ImageError::Ldd {
            binary: binary.to_owned(),
            message: format!("cannot run ldd (is libc-bin installed?): {e}"),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if is_static(&stdout) || is_static(&stderr) {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        return Err(ImageError::Ldd {
            binary: binary.to_owned(),
            message: format!("{} {}", stdout.trim(), stderr.trim()),
        });
    }
    parse_ldd(&stdout).map_err(|library| ImageError::MissingLibrary {
        binary: binary.to_owned(),
        library,
    })
}

fn is_static(text: &str) -> bool {
    text.contains("not a dynamic executable") || text.contains("statically linked")
}

/// Parses `ldd` output; `Err(name)` names the first library ldd could not find.
fn parse_ldd(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)",
        // "linux-vdso.so.1 (0x...)" (in the kernel, nothing to copy), "libfoo.so => not found".
        let (name, resolved) = match line.split_once(" => ") {
            Some((name, rest)) => (name, rest),
            None => (line, line),
        };
        if resolved.starts_with("not found") {
            return Err(name.to_owned());
        }
        let path = resolved.split(" (0x").next().unwrap_or(resolved).trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    libs.sort();
    libs.dedup();
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_glibc_ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd5a1f2000)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1)\n\
                   \tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f2)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f4)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libm.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn reports_a_missing_library() {
        let out = "\tlibssl.so.3 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n";
        assert_eq!(parse_ldd(out), Err("libssl.so.3".to_owned()));
    }

    #[test]
    fn host_binaries_resolve_to_existing_files() {
        // /bin/sh is dynamically linked on every glibc host; busybox-static is not.
        let libs = shared_libraries(Path::new("/bin/sh")).unwrap();
        assert!(!libs.is_empty());
        assert!(libs.iter().all(|p| p.is_file()), "{libs:?}");
        assert!(libs.iter().any(|p| p.to_string_lossy().contains("libc.so")));
        let static_libs = shared_libraries(Path::new("/bin/busybox")).unwrap();
        assert!(static_libs.is_empty(), "{static_libs:?}");
    }
}
