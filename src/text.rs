//! Characters that must not reach a user's screen or disk as they are in
//! names a stranger chose (file names, DICOM UIDs): control characters and
//! Unicode format characters, which are invisible or reorder what is
//! displayed around them (`report\u{202e}fdp.exe` shows as
//! "reportexe.pdf"). Upload neutralises them in stored names, `fetch` again
//! in the paths it writes.

/// Unicode general category Cf (format characters, Unicode 16), plus the
/// line and paragraph separators U+2028/U+2029: invisible, and the bidi
/// controls among them reorder how the rest of a name is displayed.
const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{2028}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Control and format characters: invisible, or they change what is
/// displayed around them (terminal escapes, bidi reordering).
pub fn hidden(c: char) -> bool {
    c.is_control() || FORMAT_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// `name` with every hidden character replaced by `_`.
pub fn neutralise(name: &str) -> String {
    name.chars()
        .map(|c| if hidden(c) { '_' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_invisible_characters_are_neutralised() {
        assert_eq!(neutralise("report\u{202e}fdp.exe"), "report_fdp.exe");
        assert_eq!(neutralise("a\u{200b}b\u{2066}c\u{feff}"), "a_b_c_");
        assert_eq!(neutralise("Müller — 病理报告.pdf"), "Müller — 病理报告.pdf");
    }
}
