//! Hot reload of the rules for the long-running modes: on SIGHUP, and when a file in a
//! rule directory changes (watched with notify, debounced). The swap is atomic; a reload
//! that finds a broken file keeps the last good set and logs why, with file and line.

use crate::rule_files::LiveRules;
use std::sync::Arc;
use std::time::Duration;

/// Editors write a file in several steps: wait for the directory to settle.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Starts the reload triggers on the current tokio runtime.
pub fn spawn(rules: Arc<LiveRules>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let watcher = watch(&rules, tx.clone());
    #[cfg(unix)]
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!("cannot listen for SIGHUP: rules reload only on file changes");
                return;
            };
            while hup.recv().await.is_some() {
                let _ = tx.send("SIGHUP");
            }
        });
    }
    tokio::spawn(async move {
        let _watcher = watcher; // dropped (and stopped) with this task
        while let Some(why) = rx.recv().await {
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let rules = Arc::clone(&rules);
            let result = tokio::task::spawn_blocking(move || rules.reload()).await;
            match result {
                Ok(Ok((trackers, pixels, redirects, params))) => {
                    tracing::info!(
                        trigger = why,
                        trackers,
                        pixels,
                        redirects,
                        params,
                        "rules reloaded"
                    )
                }
                Ok(Err(errors)) => {
                    for e in errors {
                        tracing::error!(
                            trigger = why,
                            "rules not reloaded, keeping the last good set: {e}"
                        );
                    }
                }
                Err(e) => tracing::error!("rules reload failed: {e}"),
            }
        }
    });
}

/// Watches the rule directories; `None` when no directory can be watched.
fn watch(
    rules: &LiveRules,
    tx: tokio::sync::mpsc::UnboundedSender<&'static str>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let dirs = rules.dirs();
    if dirs.is_empty() {
        return None;
    }
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(ev) = event
            && matches!(
                ev.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
            )
            && ev
                .paths
                .iter()
                .any(|p| p.extension().is_some_and(|x| x == "toml"))
        {
            let _ = tx.send("file change");
        }
    })
    .map_err(|e| tracing::warn!("cannot watch the rule directories: {e}"))
    .ok()?;
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!("cannot watch {}: {e}", dir.display());
        }
    }
    Some(watcher)
}
