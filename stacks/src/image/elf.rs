//! What the image needs from the engine binary's ELF header: the
//! architecture it runs on, so the image platform (and with it the task
//! definitions and the executors' AMI) follows the binary rather than the
//! host that builds it, and whether it asks for a dynamic loader, whose
//! libraries can only be copied from a host of the same architecture.

use crate::arch::Architecture;

/// `e_machine` of x86-64.
const EM_X86_64: u16 = 62;
/// `e_machine` of AArch64.
const EM_AARCH64: u16 = 183;
/// `p_type` of the program header naming the dynamic loader.
const PT_INTERP: u32 = 3;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elf {
    /// The architecture the binary runs on.
    pub architecture: Architecture,
    /// Whether it names a dynamic loader (`PT_INTERP`): dynamically linked.
    pub dynamic: bool,
}

/// Why a file is not an engine binary an image can ship.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// No ELF magic, or shorter than its headers say.
    #[error("not an ELF executable ({0})")]
    NotElf(&'static str),
    /// An object file or core dump rather than an executable.
    #[error("an ELF file of type {0}, not an executable")]
    NotExecutable(u16),
    /// Built for a machine the engine image does not run on.
    #[error("built for {0}; the engine image runs on x86_64 or arm64 (aarch64) Linux")]
    Machine(String),
}

/// Reads the ELF header (and program headers) of `bytes`.
pub fn read(bytes: &[u8]) -> Result<Elf, ElfError> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err(ElfError::NotElf("no ELF magic"));
    }
    let class64 = match bytes.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(ElfError::NotElf("unknown ELF class")),
    };
    let little = match bytes.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Err(ElfError::NotElf("unknown byte order")),
    };
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| {
                let b = [b[0], b[1]];
                if little {
                    u16::from_le_bytes(b)
                } else {
                    u16::from_be_bytes(b)
                }
            })
            .ok_or(ElfError::NotElf("truncated header"))
    };
    let e_type = u16_at(16)?;
    let machine = u16_at(18)?;
    let architecture = match (class64, little, machine) {
        (true, true, EM_X86_64) => Architecture::X86_64,
        (true, true, EM_AARCH64) => Architecture::Arm64,
        (_, _, m) => {
            let bits = if class64 { "64-bit" } else { "32-bit" };
            let order = if little { "" } else { " big-endian" };
            return Err(ElfError::Machine(format!(
                "{bits}{order} {} (ELF machine {m})",
                machine_name(m)
            )));
        }
    };
    // ET_EXEC, or ET_DYN (position-independent executables).
    if !matches!(e_type, 2 | 3) {
        return Err(ElfError::NotExecutable(e_type));
    }
    // Both supported machines are 64-bit little-endian from here on.
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(ElfError::NotElf("truncated program header"))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .ok_or(ElfError::NotElf("truncated header"))
    };
    let phoff = usize::try_from(u64_at(32)?).map_err(|_| ElfError::NotElf("bad e_phoff"))?;
    let phentsize = usize::from(u16_at(54)?);
    let phnum = usize::from(u16_at(56)?);
    let mut dynamic = false;
    for i in 0..phnum {
        let at = phentsize
            .checked_mul(i)
            .and_then(|o| o.checked_add(phoff))
            .ok_or(ElfError::NotElf("bad program header table"))?;
        if u32_at(at)? == PT_INTERP {
            dynamic = true;
        }
    }
    Ok(Elf {
        architecture,
        dynamic,
    })
}

/// A name people know for an ELF machine number.
fn machine_name(machine: u16) -> &'static str {
    match machine {
        3 => "x86 (i386)",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC 64",
        22 => "s390",
        40 => "ARM",
        EM_X86_64 => "x86-64",
        EM_AARCH64 => "AArch64",
        243 => "RISC-V",
        258 => "LoongArch",
        _ => "an unknown machine",
    }
}

/// The headers of a 64-bit executable for `architecture`, dynamically
/// linked when `dynamic`: enough for [`read`] and for an image build, not
/// to run. Tests write it to stand in for an engine binary of another
/// architecture than the host's.
pub fn fixture(architecture: Architecture, dynamic: bool) -> Vec<u8> {
    let machine = match architecture {
        Architecture::X86_64 => EM_X86_64,
        Architecture::Arm64 => EM_AARCH64,
    };
    header(machine, dynamic)
}

/// A minimal 64-bit little-endian executable header for `machine`, with
/// one `PT_LOAD` and, when `interp`, a `PT_INTERP` program header.
fn header(machine: u16, interp: bool) -> Vec<u8> {
    const EHSIZE: u16 = 64;
    const PHENTSIZE: u16 = 56;
    let mut types = vec![1u32];
    if interp {
        types.push(PT_INTERP);
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF");
    out.extend_from_slice(&[2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    out.extend_from_slice(&machine.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // e_version
    out.extend_from_slice(&0x40_0000u64.to_le_bytes()); // e_entry
    out.extend_from_slice(&u64::from(EHSIZE).to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&EHSIZE.to_le_bytes());
    out.extend_from_slice(&PHENTSIZE.to_le_bytes());
    out.extend_from_slice(&u16::try_from(types.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    for p_type in types {
        let mut ph = vec![0u8; usize::from(PHENTSIZE)];
        ph[..4].copy_from_slice(&p_type.to_le_bytes());
        out.extend_from_slice(&ph);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_architecture_and_the_loader() {
        let arm = read(&fixture(Architecture::Arm64, false)).unwrap();
        assert_eq!(
            arm,
            Elf {
                architecture: Architecture::Arm64,
                dynamic: false
            }
        );
        let x86 = read(&fixture(Architecture::X86_64, true)).unwrap();
        assert_eq!(
            x86,
            Elf {
                architecture: Architecture::X86_64,
                dynamic: true
            }
        );
        // A real one: /bin/sh is dynamically linked for this host.
        let sh = read(&std::fs::read("/bin/sh").unwrap()).unwrap();
        assert_eq!(Some(sh.architecture), Architecture::host());
        assert!(sh.dynamic);
    }

    #[test]
    fn refuses_what_the_image_cannot_run() {
        assert_eq!(
            read(b"#!/bin/sh\necho hi\n"),
            Err(ElfError::NotElf("no ELF magic"))
        );
        assert_eq!(
            read(&fixture(Architecture::Arm64, false)[..20]),
            Err(ElfError::NotElf("truncated header"))
        );
        let riscv = read(&header(243, false)).unwrap_err().to_string();
        assert!(riscv.contains("64-bit RISC-V (ELF machine 243)"), "{riscv}");
        let mut arm32 = header(40, false);
        arm32[4] = 1;
        let arm32 = read(&arm32).unwrap_err().to_string();
        assert!(arm32.contains("32-bit ARM"), "{arm32}");
        let mut object = header(EM_X86_64, false);
        object[16] = 1; // ET_REL
        assert_eq!(read(&object), Err(ElfError::NotExecutable(1)));
        let mut short = header(EM_X86_64, true);
        short.truncate(short.len() - 60);
        assert_eq!(
            read(&short),
            Err(ElfError::NotElf("truncated program header"))
        );
    }
}
