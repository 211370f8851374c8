//! `mailveil rules import`: converts other projects' URL-cleaning lists (ClearURLs
//! `data.min.json`, uBlock Origin / AdGuard `$removeparam` filters) into one mailveil rule
//! file (docs/rules.md), ready to drop into a `--rules` directory.
//!
//! What maps is translated exactly or not at all: anything the format cannot say (raw
//! URL edits, page-dependent options, a regex mailveil cannot read) becomes a
//! `# skipped: WHAT: WHY` line, counted on stderr. An imported rule never matches more
//! than its source meant. Exceptions become `action = "keep"` entries, limited to the
//! names, hosts and paths the source's rules cover (and read at least as widely as the
//! source reads them, so that they remove less, never more). Ids are prefixed
//! (`clearurls-`, `removeparam-`) so that they never replace shipped rules.

mod clearurls;
mod out;
mod pattern;
mod removeparam;
mod url;

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// The list formats `rules import` reads.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// ClearURLs data.min.json (providers: urlPattern, rules, referralMarketing, redirections...).
    Clearurls,
    /// uBlock Origin / AdGuard filter list: its `$removeparam` filters.
    Removeparam,
}

/// `mailveil rules import FORMAT FILE [--out FILE]`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The format of FILE.
    #[arg(value_enum)]
    pub format: Format,
    /// The list to convert.
    pub file: PathBuf,
    /// Write the rule file here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs the import: the rule file on stdout or `--out`, the summary on stderr.
pub fn run(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let label = args.file.file_name().map_or_else(
        || args.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let file = match args.format {
        Format::Clearurls => clearurls::import(&text, &label).map_err(anyhow::Error::msg)?,
        Format::Removeparam => removeparam::import(&text, &label),
    };
    let (entries, skipped, considered) = (file.entries, file.skipped, file.considered);
    let toml = file.finish();
    match &args.out {
        Some(path) => std::fs::write(path, &toml)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(toml.as_bytes())
                .and_then(|()| out.flush())
                .context("writing the rule file")?;
        }
    }
    let of = if considered > 0 {
        format!(
            " of {considered} source entries ({:.1}%)",
            skipped as f64 * 100.0 / considered as f64
        )
    } else {
        String::new()
    };
    eprintln!(
        "mailveil: imported {entries} entries from {label}; skipped {skipped}{of} (see the `# skipped:` lines)"
    );
    Ok(ExitCode::SUCCESS)
}

/// Counts steps of the importers' loops that depend on the input's size, so a test can
/// check the work grows linearly with the input (no wall clock involved). A no-op
/// outside tests.
pub(crate) mod work {
    #[cfg(test)]
    thread_local! {
        static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// `n` steps done.
    #[inline]
    pub fn tick(n: usize) {
        #[cfg(test)]
        STEPS.with(|s| s.set(s.get() + n as u64));
        #[cfg(not(test))]
        let _ = n;
    }

    /// The steps counted on this thread so far.
    #[cfg(test)]
    pub fn steps() -> u64 {
        STEPS.with(std::cell::Cell::get)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    fn compiles(toml: &str) -> Result<(), crate::RuleError> {
        crate::Rules::compile(&[crate::RuleSource {
            name: "imported.toml".into(),
            text: toml.into(),
        }])
        .map(|_| ())
    }

    fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop::sample::select(options).prop_map(str::to_string)
    }

    /// Realistic fragments, and now and then random ones.
    fn mixed(
        options: &'static [&'static str],
        random: &'static str,
    ) -> impl Strategy<Value = String> {
        prop_oneof![3 => pick(options), 1 => random]
    }

    fn removeparam_line() -> impl Strategy<Value = String> {
        (
            mixed(
                &[
                    "",
                    "@@",
                    "||shop.example^",
                    "||megamart.*^",
                    "||a.example/b",
                    "*",
                    "|https://x",
                ],
                r"[|@a-z.*^/]{0,8}",
            ),
            mixed(
                &[
                    "",
                    "=utm_source",
                    "=/^utm_/",
                    "=/^(a|b_c)=/i",
                    "=~x",
                    "=/x$/",
                    "=/^x=1/",
                    "=/y/",
                    "=a\\,b",
                ],
                r"=~?/?[a-zA-Z_.*()|\[\]=,\\?+^$%-]{0,14}",
            ),
            mixed(
                &[
                    "",
                    ",important",
                    ",domain=x.com",
                    ",~xhr",
                    ",script",
                    ",doc",
                    ",3p",
                ],
                r",[a-z~=._-]{0,8}",
            ),
        )
            .prop_map(|(p, v, o)| format!("{p}$removeparam{v}{o}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever the filter lines, the importer does not panic and what it writes compiles.
        #[test]
        fn removeparam_output_always_compiles(lines in prop::collection::vec(removeparam_line(), 0..12)) {
            let f = super::removeparam::import(&lines.join("\n"), "fuzz.txt");
            let toml = f.finish();
            prop_assert!(compiles(&toml).is_ok(), "{toml}");
        }

        /// Whatever the regexes of a provider, the importer does not panic and what it writes compiles.
        #[test]
        fn clearurls_output_always_compiles(
            host in mixed(
                &[
                    r"^https?:\/\/(?:[a-z0-9-]+\.)*?amazon(?:\.[a-z]{2,}){1,}",
                    r"^https?:\/\/(?:[a-z0-9-]+\.)*?shop\.example",
                    r"^https?:\/\/(?:[a-z0-9-]+\.)*?(?:a|b)\.example\/x\?",
                    r"^https?:\/\/links\.example",
                    r"^https?:\/\/(?:[a-z0-9-]+\.)+x.example\/?",
                    ".*",
                ],
                r"(\^https\?:\\/\\/)?[a-z.|()?\\-]{1,10}(\\/[a-z?*.\\]{0,6})?",
            ),
            rules in prop::collection::vec(
                mixed(&["qid", "ref_?", "p[fd]_x", "utm_.*", "(?:%3F)?fbclid", "a.b", "[a-z]+x", "(?:x|y)_(?:1|2)"],
                      r"[a-zA-Z_.*()|\[\]?+^$%{},0-9\\-]{0,12}"),
                0..6,
            ),
            redirect in mixed(&[r"\/go\?.*?(?:to|u)=", r"\/r\/", r".*?[?&]url=", r"\/x\?u="], r"[a-z?*.=()\[\]^&\\/-]{0,14}"),
            complete in any::<bool>(),
        ) {
            let provider = serde_json::json!({
                "urlPattern": host,
                "completeProvider": complete,
                "rules": rules,
                "referralMarketing": ["ref"],
                "exceptions": [
                    "^https?:\\/\\/x\\.example",
                    "^https?:\\/\\/(?:[a-z0-9-]+\\.)*?sub\\.shop\\.example",
                    "^https?:\\/\\/(?:[a-z0-9-]+\\.)*?amazon(?:\\.[a-z]{2,}){1,}\\/gp\\/",
                    "^https?:\\/\\/(?:[a-z0-9-]+\\.)*?docs\\.amazon(?:\\.[a-z]{2,}){1,}",
                ],
                "rawRules": ["\\/ref=[^/?]*"],
                "redirections": [format!("{host}{redirect}([^&]*)")],
            });
            let json = serde_json::json!({ "providers": { "Fuzz Co": provider } }).to_string();
            let f = super::clearurls::import(&json, "fuzz.json").unwrap();
            let toml = f.finish();
            prop_assert!(compiles(&toml).is_ok(), "{toml}");
        }
    }
}
