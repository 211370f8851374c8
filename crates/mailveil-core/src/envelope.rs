//! The SMTP envelope of one message: who sent it and to whom it is delivered.

/// Envelope sender and recipients, as the frontend received them (MAIL FROM / RCPT TO,
/// or `--recipient` on the command line). The recipients alone choose the
/// recipient side of `[[policy]]` entries (headers never do), and feed recipient-token
/// detection. Addresses are `local@domain` with the local part unquoted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The envelope sender (MAIL FROM), if known. Empty for bounces.
    pub sender: Option<String>,
    /// The envelope recipients (RCPT TO).
    pub recipients: Vec<String>,
}

impl Envelope {
    /// An envelope with the given recipients and no known sender.
    pub fn to<I, S>(recipients: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Envelope {
            sender: None,
            recipients: recipients.into_iter().map(Into::into).collect(),
        }
    }
}
