//! Escaping for the HTML reports (eval, doctor).

/// `s` as HTML text or attribute value.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
