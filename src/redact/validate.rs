//! Checksums and structural rules that turn a candidate into a finding.
//! Pure functions on bytes, each bounded by the candidate's length.

/// Luhn check over ASCII digits (separators already removed).
pub(super) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Whether a card number (digits only) has an issuer prefix and a length
/// that issuer uses. A bare Luhn check passes one random number in ten, so
/// the prefix is what keeps epoch milliseconds and order ids out.
pub(super) fn card_issuer_ok(d: &[u8]) -> bool {
    let n = d.len();
    if !(12..=19).contains(&n) {
        return false;
    }
    let p2 = prefix_num(d, 2);
    let p3 = prefix_num(d, 3);
    let p4 = prefix_num(d, 4);
    match d[0] {
        b'4' => matches!(n, 13 | 16 | 19),
        b'5' => (51..=55).contains(&p2) && n == 16 || (p2 == 50 || p2 >= 56) && n >= 12,
        b'2' => (2221..=2720).contains(&p4) && n == 16 || p4 == 2131 && n == 15,
        b'3' => {
            (p2 == 34 || p2 == 37) && n == 15
                || ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39)
                    && (14..=19).contains(&n)
                || p2 == 35 && (16..=19).contains(&n)
        }
        b'6' => n >= 12,
        b'1' => p4 == 1800 && n == 15,
        _ => false,
    }
}

fn prefix_num(d: &[u8], k: usize) -> u32 {
    d.iter()
        .take(k)
        .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'))
}

/// US SSN rules: no area 000, 666 or 900-999, no group 00, no serial 0000.
pub(super) fn ssn_ok(area: &[u8], group: &[u8], serial: &[u8]) -> bool {
    let a = prefix_num(area, 3);
    a != 0 && a != 666 && a < 900 && group != b"00" && serial != b"0000"
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// IBAN check: known country, that country's length, ISO 7064 mod 97 == 1.
/// `compact` has separators removed; letters may be either case.
pub(super) fn iban_ok(compact: &[u8]) -> bool {
    if compact.len() < 15 || compact.len() > 34 {
        return false;
    }
    let cc = [
        compact[0].to_ascii_uppercase(),
        compact[1].to_ascii_uppercase(),
    ];
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| **c == cc) else {
        return false;
    };
    if compact.len() != len || !compact[2].is_ascii_digit() || !compact[3].is_ascii_digit() {
        return false;
    }
    // Move the first four characters to the end; letters count as 10..35.
    let mut rem = 0u32;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            b'a'..=b'z' => u32::from(b - b'a') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// A dotted quad with octets 0..=255 and no leading zeros on multi-digit
/// octets (`010` reads as a version or octal, not an address).
pub(super) fn octet(group: &[u8]) -> bool {
    match group.len() {
        1 => true,
        2 | 3 => group[0] != b'0' && prefix_num(group, 3) <= 255,
        _ => false,
    }
}

/// Characters of a base64url token (JWT segments, Google keys).
pub(super) fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Characters of standard base64 (AWS secret keys).
pub(super) fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'/' || b == b'+'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_one_digit_off() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"378282246310005"));
        assert!(!luhn(b"4111111111111112"));
    }

    #[test]
    fn issuer_rules_reject_epoch_millis() {
        assert!(card_issuer_ok(b"4111111111111111"));
        assert!(card_issuer_ok(b"378282246310005"));
        assert!(!card_issuer_ok(b"1732579200000"));
        assert!(!card_issuer_ok(b"9111111111111111"));
    }

    #[test]
    fn iban_checksum_and_length() {
        assert!(iban_ok(b"GB82WEST12345698765432"));
        assert!(iban_ok(b"gb82west12345698765432"));
        assert!(iban_ok(b"DE89370400440532013000"));
        assert!(!iban_ok(b"GB82WEST12345698765433"));
        assert!(!iban_ok(b"GB82WEST1234569876543"));
        assert!(!iban_ok(b"ZZ82WEST12345698765432"));
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn_ok(b"123", b"45", b"6789"));
        assert!(!ssn_ok(b"000", b"45", b"6789"));
        assert!(!ssn_ok(b"666", b"45", b"6789"));
        assert!(!ssn_ok(b"900", b"45", b"6789"));
        assert!(!ssn_ok(b"123", b"00", b"6789"));
        assert!(!ssn_ok(b"123", b"45", b"0000"));
    }

    #[test]
    fn octets() {
        assert!(octet(b"0") && octet(b"255") && octet(b"10"));
        assert!(!octet(b"256") && !octet(b"010") && !octet(b"1000"));
    }
}
