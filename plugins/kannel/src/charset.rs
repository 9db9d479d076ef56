//! Character sets Kannel speaks: decoding what smsbox sends, and the GSM
//! alphabet test that picks the coding of outgoing text.

/// The GSM 03.38 default alphabet.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Its extension table (each costs two septets).
const GSM_EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// Whether `text` can go as GSM 7-bit without losing a character.
pub fn fits_gsm(text: &str) -> bool {
    text.chars().all(|c| GSM_BASIC.contains(c) || GSM_EXTENSION.contains(c))
}

/// `text` as UTF-16BE bytes (UCS-2 for the Basic Multilingual Plane).
pub fn encode_utf16be(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Decode the bytes of Kannel's `%a` with the charset it names (`%C`); with
/// no charset, UCS-2 coding (`%c` = 2) means UTF-16BE and anything else
/// UTF-8.
pub fn decode(raw: &[u8], charset: Option<&str>, coding: Option<&str>) -> Result<String, String> {
    let charset = charset.map(|c| c.trim().to_ascii_uppercase()).filter(|c| !c.is_empty());
    let charset = charset.unwrap_or_else(|| if coding == Some("2") { "UTF-16BE".into() } else { "UTF-8".into() });
    match charset.as_str() {
        "UTF-8" | "UTF8" => String::from_utf8(raw.to_vec()).map_err(|_| "`text` is not valid UTF-8".to_owned()),
        "UTF-16BE" | "UCS-2" | "UCS2" | "UTF-16" => {
            if !raw.len().is_multiple_of(2) {
                return Err("`text` has an odd number of bytes for UTF-16BE".to_owned());
            }
            let units = raw.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units).collect::<Result<String, _>>().map_err(|_| "`text` is not valid UTF-16BE".into())
        }
        "ISO-8859-1" | "LATIN1" | "WINDOWS-1252" | "CP1252" => Ok(raw.iter().map(|&b| windows_1252(b)).collect()),
        "US-ASCII" | "ASCII" => match raw.is_ascii() {
            true => Ok(raw.iter().map(|&b| b as char).collect()),
            false => Err("`text` is not ASCII".to_owned()),
        },
        other => Err(format!("unsupported charset `{other}`")),
    }
}

/// A byte of WINDOWS-1252 (a superset of ISO-8859-1's printable range).
fn windows_1252(byte: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}', '\u{90}', '‘',
        '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
    ];
    match byte {
        0x80..=0x9f => HIGH[usize::from(byte - 0x80)],
        other => other as char,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm_alphabet() {
        assert!(fits_gsm("Hello @ £5 {ok} €"));
        assert!(!fits_gsm("naïve"));
        assert!(!fits_gsm("Привет"));
        assert!(!fits_gsm("👍"));
    }

    #[test]
    fn decodes_what_kannel_names() {
        assert_eq!(decode("héllo".as_bytes(), Some("UTF-8"), Some("0")).unwrap(), "héllo");
        assert_eq!(decode(&encode_utf16be("Привет 👍"), Some("UTF-16BE"), Some("2")).unwrap(), "Привет 👍");
        assert_eq!(decode(&encode_utf16be("ü"), None, Some("2")).unwrap(), "ü");
        assert_eq!(decode(&[0x68, 0xe9, 0x80], Some("windows-1252"), None).unwrap(), "hé€");
        assert!(decode(&[0xff], Some("UTF-8"), None).is_err());
        assert!(decode(&[0, 1, 2], Some("UTF-16BE"), None).is_err());
        assert!(decode(b"x", Some("KOI8-R"), None).unwrap_err().contains("unsupported charset"));
    }
}
