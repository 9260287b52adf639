//! Build-time settings: `cfg(emulated)` when the tests are built to run under
//! an emulator (`POSTERN_TEST_RUNNER`, set by `cross/test.sh`), so the tests
//! that cannot measure or run there are marked ignored instead of passing
//! without checking anything.

fn main() {
    println!("cargo::rerun-if-env-changed=POSTERN_TEST_RUNNER");
    println!("cargo::rustc-check-cfg=cfg(emulated)");
    if std::env::var_os("POSTERN_TEST_RUNNER").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=emulated");
    }
}
