//! The coverage-guided driver: `SWITCHYARD_FUZZ_TARGET=<name>` picks the target (one binary
//! for all of them, so the engine is linked once). Build and run it with `scripts/fuzz`.

#![no_main]

use std::sync::OnceLock;

fn chosen() -> &'static switchyard_fuzz::Target {
    static TARGET: OnceLock<&'static switchyard_fuzz::Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let name = std::env::var("SWITCHYARD_FUZZ_TARGET").unwrap_or_default();
        switchyard_fuzz::target(&name).unwrap_or_else(|| {
            let names: Vec<&str> = switchyard_fuzz::TARGETS.iter().map(|t| t.name).collect();
            eprintln!("set SWITCHYARD_FUZZ_TARGET to one of: {}", names.join(", "));
            std::process::exit(2)
        })
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| (chosen().run)(data));
