//! Embeds the shipped rules (rules/*.toml) so the binary works on its own; users add or
//! override rules with files in a rules directory, no rebuild needed. Each file is also
//! embedded in postcard, read here from its TOML into the rule format's own structures: a
//! `mailveil filter` process reads the shipped rules at every start, and postcard reads
//! much faster than TOML or JSON (issue 17). The TOML stays the source, for the lines
//! that errors and `rules explain` name.
use std::{env, fs, path::Path};

/// The rule format, the same file the core compiles: what is written here is what the
/// binary reads back.
#[allow(dead_code)]
#[path = "crates/mailveil-core/src/rules/schema.rs"]
mod schema;

fn main() {
    println!("cargo:rerun-if-changed=rules");
    println!("cargo:rerun-if-changed=crates/mailveil-core/src/rules/schema.rs");
    // Read at run time of the build script (not `env!`, fixed when the script was compiled):
    // a build directory reused from another checkout must still embed this one's rules.
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("rules");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let out = Path::new(&env::var("OUT_DIR").unwrap()).to_path_buf();
    let mut code = String::from(
        "/// The rule files shipped with mailveil: (file name, TOML text, the same in postcard).\npub static SHIPPED: &[(&str, &str, &[u8])] = &[\n",
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().unwrap().to_string_lossy();
        let prepared = out.join(format!("{name}.postcard"));
        fs::write(&prepared, to_postcard(&fs::read_to_string(f).unwrap())).unwrap();
        code.push_str(&format!(
            "    ({name:?}, include_str!({:?}), include_bytes!({:?})),\n",
            f.display().to_string(),
            prepared.display().to_string()
        ));
    }
    code.push_str("];\n");
    fs::write(out.join("shipped_rules.rs"), code).unwrap();
}

/// The rule file in postcard, or nothing when it is not a rule file: then the binary reads
/// the TOML at run time, and says what is wrong with it there, as with any rule file.
fn to_postcard(toml_text: &str) -> Vec<u8> {
    toml::from_str::<schema::RuleFile>(toml_text)
        .ok()
        .and_then(|file| postcard::to_allocvec(&file).ok())
        .unwrap_or_default()
}
