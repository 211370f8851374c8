//! Host and path globs of the rule format, compiled to regex source.

/// Regex source for a host glob. A bare domain matches itself and every subdomain;
/// `=host` matches that host only; `*` matches any run of characters other than `/`.
pub fn host_regex(glob: &str) -> String {
    let glob = glob.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Some(exact) = glob.strip_prefix('=') {
        return glob_regex(exact.trim(), "[^/]*");
    }
    if glob.contains('*') {
        glob_regex(&glob, "[^/]*")
    } else {
        format!("(?:[^/]*\\.)?{}", regex::escape(&glob))
    }
}

/// Regex source for a path glob: case-insensitive prefix match, `*` = any run.
pub fn path_regex(glob: &str) -> String {
    let glob = glob.trim().to_ascii_lowercase();
    let glob = if glob.starts_with('/') {
        glob
    } else {
        format!("/{glob}")
    };
    glob_regex(&glob, ".*")
}

/// Regex source for a parameter-name glob (whole name).
pub fn name_regex(glob: &str) -> String {
    format!("^{}$", glob_regex(&glob.trim().to_ascii_lowercase(), ".*"))
}

fn glob_regex(glob: &str, star: &str) -> String {
    glob.split('*')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn host_matches(glob: &str, host: &str) -> bool {
        Regex::new(&format!("^{}$", host_regex(glob)))
            .unwrap()
            .is_match(host)
    }

    #[test]
    fn bare_domain_matches_itself_and_subdomains_only() {
        assert!(host_matches("list-manage.com", "list-manage.com"));
        assert!(host_matches("list-manage.com", "us3.list-manage.com"));
        assert!(!host_matches("list-manage.com", "evil-list-manage.com"));
        assert!(!host_matches("list-manage.com", "list-manage.com.evil.net"));
    }

    #[test]
    fn an_equals_sign_means_that_host_only() {
        assert!(host_matches("=vk.com", "vk.com"));
        assert!(!host_matches("=vk.com", "m.vk.com"));
        assert!(!host_matches("=vk.com", "vk.com.evil.net"));
        assert!(host_matches("=newsletter.lidl.*", "newsletter.lidl.de"));
        assert!(!host_matches("=newsletter.lidl.*", "x.newsletter.lidl.de"));
    }

    #[test]
    fn star_globs_stay_within_the_host() {
        assert!(host_matches("u*.ct.sendgrid.net", "u123.ct.sendgrid.net"));
        assert!(!host_matches("*.list-manage.com", "list-manage.com"));
        assert!(host_matches("www.amazon.*", "www.amazon.co.uk"));
    }

    #[test]
    fn path_is_a_case_insensitive_prefix() {
        let re = Regex::new(&format!("^{}", path_regex("/track/open"))).unwrap();
        assert!(re.is_match("/track/open.php?u=1"));
        let re = Regex::new(&format!("^{}", path_regex("/ss/o/*/ho.gif"))).unwrap();
        assert!(re.is_match("/ss/o/abc/3k5/def/ho.gif"));
        assert!(!re.is_match("/ss/c/abc"));
    }
}
