//! The names of finding kinds and actions: one table each, from which the header, the
//! JSON report (serde), the report store and the metrics take their strings, and from
//! which a stored name is read back.

use std::fmt;
use std::str::FromStr;

/// A name that is no finding kind or action of this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}: {name:?}")]
pub struct UnknownName {
    /// What was asked for: `finding kind` or `action`.
    pub what: &'static str,
    /// The name given.
    pub name: String,
}

/// An enum whose variants each have one kebab-case name: `as_str`, `ALL`, `Display`,
/// `FromStr` and serde all come from the one list. (strum's derives do the same with a
/// proc-macro dependency; the core keeps its dependencies few, and this is all it needs.)
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order (the order of the header's counts).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The kebab-case name: in the header, the JSON report, the store, metrics.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, UnknownName> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownName {
                        what: $what,
                        name: s.to_string(),
                    })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                name.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

named_enum! {
    /// What kind of thing was found.
    pub enum FindingKind ("finding kind") {
        /// An open-tracking image or beacon (known by rule, or by heuristic).
        Pixel = "pixel",
        /// A remote resource URL that carries the recipient's address (plain, encoded or
        /// hashed).
        RecipientToken = "recipient-token",
        /// Remote content that is not known to track: content images, stylesheets, fonts,
        /// media.
        RemoteContent = "remote-content",
        /// Script, frames, objects, embeds, applets, event handlers, CSS expressions.
        ActiveContent = "active-content",
        /// Prefetch / preload / dns-prefetch / preconnect / manifest hints.
        Prefetch = "prefetch",
        /// `<meta http-equiv=refresh>` and similar navigation on open.
        Refresh = "refresh",
        /// A `<base href>` that would make relative URLs remote.
        Base = "base",
        /// A click-tracking redirect link: unwrapped to its destination, or kept (opaque).
        ClickRedirect = "click-redirect",
        /// Identifying parameters removed from a link.
        TrackingParam = "tracking-param",
        /// A read-receipt request header.
        ReadReceipt = "read-receipt",
        /// A signed part (multipart/signed, S/MIME), left untouched.
        Signed = "signed",
        /// An encrypted part, left untouched.
        Encrypted = "encrypted",
        /// Something could not be parsed or decoded; see the rule field.
        Malformed = "malformed",
    }
}

named_enum! {
    /// What was done about a finding (docs/architecture.md, "Findings and actions").
    pub enum Action ("action") {
        /// The element, attribute, CSS declaration or header was removed.
        Strip = "strip",
        /// A redirect link was replaced by the destination it carries.
        Unwrap = "unwrap",
        /// Identifying parameters were removed from a link.
        Clean = "clean",
        /// A relative URL was made absolute (after a `<base>` was removed).
        Resolve = "resolve",
        /// Left as it was, and reported.
        Keep = "keep",
        /// Left untouched on purpose (signed or encrypted content).
        Untouched = "untouched",
        /// The URL was rewritten to the image proxy (or, for a link, the link shield):
        /// fetched by the proxy when the mail is opened.
        Proxy = "proxy",
        /// The URL was rewritten to the image proxy and is fetched into its cache at
        /// delivery.
        Prefetch = "prefetch",
    }
}

impl Action {
    /// Whether a finding with this action counts as acted on: in the header's counts per
    /// kind and in what the report store calls blocked. Not `keep`, nor `proxy` and
    /// `prefetch`, whose content is still fetched (by the proxy, the header counts them
    /// apart as `proxied` and `prefetched`).
    pub fn counted(self) -> bool {
        !matches!(self, Action::Keep | Action::Proxy | Action::Prefetch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_as_itself_through_str_display_and_serde() {
        for &k in FindingKind::ALL {
            assert_eq!(k.as_str().parse::<FindingKind>(), Ok(k));
            assert_eq!(k.to_string(), k.as_str());
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<FindingKind>(&json).unwrap(), k);
        }
        for &a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
            assert_eq!(a.to_string(), a.as_str());
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), a);
        }
        assert_eq!(FindingKind::ALL.len(), 13);
        assert_eq!(Action::ALL.len(), 8);
    }

    #[test]
    fn names_are_kebab_case_and_unknown_names_are_refused() {
        assert_eq!(FindingKind::RecipientToken.as_str(), "recipient-token");
        assert_eq!(Action::Untouched.as_str(), "untouched");
        for bad in ["", "Pixel", "recipient_token", "pixel ", "strip"] {
            assert!(bad.parse::<FindingKind>().is_err(), "{bad:?}");
        }
        for bad in ["", "Strip", "pixel", "keep\n"] {
            assert!(bad.parse::<Action>().is_err(), "{bad:?}");
        }
        let e = "evil".parse::<Action>().unwrap_err();
        assert_eq!(e.to_string(), "unknown action: \"evil\"");
        assert!(serde_json::from_str::<Action>("\"evil\"").is_err());
    }

    #[test]
    fn the_order_of_all_is_the_order_of_ord() {
        assert!(FindingKind::ALL.windows(2).all(|w| w[0] < w[1]));
        assert!(Action::ALL.windows(2).all(|w| w[0] < w[1]));
    }
}
