//! The registrable domain of a sender (`news.shop.example.co.uk` -> `example.co.uk`): the
//! name a reader knows the brand by, one level below its public suffix, read from the
//! Public Suffix List compiled into the `psl` crate (no list is fetched or read at run
//! time; a new list comes with a new crate release).

/// The registrable domain of the domain of `address` (`local@domain`), lowercased and
/// in ASCII (IDNA); `None` when the address has no domain.
///
/// A domain under a suffix the list does not know (`.example`, `.test`) has its last
/// label as its suffix, as the list's own rule `*` says. A domain that is a public
/// suffix itself, an address literal (`[192.0.2.1]`) or what does not parse as a host
/// name is kept whole: it names the sender as well as anything can.
pub fn registrable_of_address(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain
        .trim()
        .trim_end_matches('>')
        .trim_end_matches('.')
        .to_lowercase();
    if domain.is_empty() {
        return None;
    }
    let ascii = match url::Host::parse(&domain) {
        Ok(url::Host::Domain(d)) => d,
        // An address literal, or no host name at all: kept as written.
        _ => return Some(domain),
    };
    let registrable = psl::domain_str(&ascii)
        .map(str::to_string)
        .unwrap_or_else(|| ascii.clone());
    Some(registrable)
}

#[cfg(test)]
mod tests {
    use super::registrable_of_address as reg;

    #[test]
    fn the_registrable_domain_is_one_label_below_the_public_suffix() {
        assert_eq!(
            reg("news@news.shop.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(reg("a@mail.Shop.COM.").as_deref(), Some("shop.com"));
        assert_eq!(reg("a@shop.com").as_deref(), Some("shop.com"));
        // Private suffixes of the list: each user's site is its own registrable domain.
        assert_eq!(
            reg("a@news.alice.github.io").as_deref(),
            Some("alice.github.io")
        );
        // Unknown suffixes: the last label is the suffix (the list's default rule).
        assert_eq!(reg("a@news.shop.example").as_deref(), Some("shop.example"));
        assert_eq!(reg("a@mail.example.test").as_deref(), Some("example.test"));
        // Internationalised names in their ASCII form.
        assert_eq!(
            reg("a@nieuws.bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
    }

    #[test]
    fn what_is_not_a_name_under_a_suffix_is_kept_or_none() {
        assert_eq!(reg("a@co.uk").as_deref(), Some("co.uk"));
        assert_eq!(reg("a@[192.0.2.1]").as_deref(), Some("[192.0.2.1]"));
        assert_eq!(reg("a@localhost").as_deref(), Some("localhost"));
        assert_eq!(reg("no-domain"), None);
        assert_eq!(reg("a@"), None);
    }
}
