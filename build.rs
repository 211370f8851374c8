//! Embeds the shipped rules (rules/*.toml) so the binary works on its own; users add or
//! override rules with files in a rules directory, no rebuild needed. Each file is also
//! embedded as JSON, read here from its TOML: a `mailveil filter` process reads the
//! shipped rules at every start, and JSON reads several times faster (issue 17). The
//! TOML stays the source, for the lines that errors and `rules explain` name.
use std::{env, fs, path::Path};

fn main() {
    println!("cargo:rerun-if-changed=rules");
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
        "/// The rule files shipped with mailveil: (file name, TOML text, the same as JSON).\npub static SHIPPED: &[(&str, &str, &str)] = &[\n",
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().unwrap().to_string_lossy();
        let json = out.join(format!("{name}.json"));
        fs::write(&json, to_json(&fs::read_to_string(f).unwrap())).unwrap();
        code.push_str(&format!(
            "    ({name:?}, include_str!({:?}), include_str!({:?})),\n",
            f.display().to_string(),
            json.display().to_string()
        ));
    }
    code.push_str("];\n");
    fs::write(out.join("shipped_rules.rs"), code).unwrap();
}

/// The TOML document as JSON, or nothing when it is not TOML: then the binary reads the
/// TOML at run time, and says what is wrong with it there, as with any rule file.
fn to_json(toml_text: &str) -> String {
    toml_text
        .parse::<toml::Table>()
        .ok()
        .and_then(|table| serde_json::to_string(&table).ok())
        .unwrap_or_default()
}
