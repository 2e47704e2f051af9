//! Transport errors, read whole: tonic shows only the outermost message ("transport error"),
//! the cause (a refused connection, an unknown certificate issuer) is in the sources.

/// An error and its sources, outermost first.
pub(crate) fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// An error and its sources, `: `-separated, each message once: "transport error: invalid
/// peer certificate: UnknownIssuer" rather than the bare "transport error" tonic shows.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in chain(err) {
        let text = e.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
