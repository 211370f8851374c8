//! Mails to send: built here, never copied from a corpus.

/// A tracked HTML newsletter from news@sender.example to `to`, marked with `token`
/// (Subject, Message-ID `<token@sender.example>`, body): an open pixel that carries the
/// address, a content image at `image` (a URL the test serves, or any), a link with
/// campaign parameters, and a read-receipt request.
pub fn newsletter(to: &str, token: &str, image: &str) -> Vec<u8> {
    format!(
        "From: News <news@sender.example>\r\n\
         To: {to}\r\n\
         Subject: Spring sale {token}\r\n\
         Message-ID: <{token}@sender.example>\r\n\
         Date: Mon, 30 Nov 2026 08:00:00 +0000\r\n\
         Disposition-Notification-To: news@sender.example\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         \r\n\
         <html><body><p>Spring sale {token}, the content stays.</p>\r\n\
         <img src=\"{image}\" width=\"600\" height=\"200\" alt=\"Sale\">\r\n\
         <p><a href=\"https://shop.example/sale?utm_source=news&amp;utm_medium=email\">Shop now</a></p>\r\n\
         <img src=\"https://t.example/open.gif?e={to}\" width=\"1\" height=\"1\">\r\n\
         </body></html>\r\n"
    )
    .into_bytes()
}

/// The OpenPGP-signed newsletter of tests/fixtures/signed, its Subject marked with
/// `token` (outside the signed part) and addressed to `to`.
pub fn signed(to: &str, token: &str) -> Vec<u8> {
    let raw = include_str!("../fixtures/signed/pgp-newsletter.eml");
    raw.replace(
        "Subject: Our autumn catalogue (OpenPGP signed)",
        &format!("Subject: Our autumn catalogue {token}"),
    )
    .replace("To: Reader <reader@mailveil.test>", &format!("To: <{to}>"))
    .replace(
        "Message-ID: <autumn.pgp.1@signedshop.example>",
        &format!("Message-ID: <{token}@sender.example>"),
    )
    .into_bytes()
}
