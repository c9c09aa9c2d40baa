//! The built `kiln` executable itself: how it is linked (see `crates/kiln-cli/build.rs`).

/// On glibc Linux the executable's relative relocations are packed (`DT_RELR`): as classic
/// `RELA` entries they were a 2.6 MiB table that the loader reads at every start and that then
/// stays resident. Read from the ELF's dynamic section, so a build that lost the link flag
/// fails here.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn relative_relocations_are_packed() {
    if option_env!("KILN_NO_RELR").is_some() {
        eprintln!("skipped: built with KILN_NO_RELR");
        return;
    }
    let path = env!("CARGO_BIN_EXE_kiln");
    let elf = std::fs::read(path).unwrap();
    let dynamic = dynamic_entries(&elf);
    const DT_RELASZ: i64 = 8;
    const DT_RELR: i64 = 36;
    const DT_RELRSZ: i64 = 35;
    assert!(
        dynamic.iter().any(|&(tag, _)| tag == DT_RELR),
        "{path} has no DT_RELR entry: {dynamic:?}"
    );
    let relr = dynamic.iter().find(|&&(t, _)| t == DT_RELRSZ).map(|e| e.1);
    assert!(relr.is_some_and(|n| n > 0), "empty DT_RELR table");
    // What stays in RELA are the few relocations that need a symbol.
    let rela = dynamic
        .iter()
        .find(|&&(t, _)| t == DT_RELASZ)
        .map_or(0, |e| e.1);
    assert!(
        rela < 64 * 1024,
        "{rela} bytes of RELA relocations remain: the relative ones were not packed"
    );
}

/// The (tag, value) pairs of a little-endian ELF64 file's `PT_DYNAMIC` segment.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn dynamic_entries(elf: &[u8]) -> Vec<(i64, u64)> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    assert_eq!(elf[5], 1, "not little-endian");
    let phoff = u64_at(0x20) as usize;
    let phentsize = u16_at(0x36) as usize;
    let phnum = u16_at(0x38) as usize;
    const PT_DYNAMIC: u32 = 2;
    let ph = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&h| u32_at(h) == PT_DYNAMIC)
        .expect("no PT_DYNAMIC segment");
    let (offset, size) = (u64_at(ph + 0x08) as usize, u64_at(ph + 0x20) as usize);
    let mut entries = Vec::new();
    for e in (offset..offset + size).step_by(16) {
        let tag = u64_at(e) as i64;
        if tag == 0 {
            break;
        }
        entries.push((tag, u64_at(e + 8)));
    }
    entries
}
