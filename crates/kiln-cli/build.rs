//! Link step of the `kiln` binary.
//!
//! On glibc Linux the binary is linked with packed relative relocations (`DT_RELR`, glibc ≥
//! 2.36, the release the Docker image and CI run). A position-independent executable of this
//! size carries about 110,000 relative relocations, which the dynamic loader reads in full at
//! every start: as classic `RELA` entries they are a 2.6 MiB table that then stays resident
//! (of an idle server's 40 MiB), as `RELR` a bitmap of a few tens of KiB. The
//! executable stays position-independent (ASLR is unchanged).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KILN_NO_RELR");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    // An escape hatch for toolchains older than glibc 2.36 / binutils 2.38 / lld 15.
    if os == "linux" && env == "gnu" && std::env::var_os("KILN_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
