//! Key, value and wildcard-pattern syntax.

/// `[a-z0-9_.]+`, no empty dotted segment (so `a..b`, `.a` and `a.` are rejected:
/// they are always typos and would break wildcard matching).
pub const fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    if b.is_empty() || b[0] == b'.' || b[b.len() - 1] == b'.' {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let ok = c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'.';
        if !ok || (c == b'.' && i + 1 < b.len() && b[i + 1] == b'.') {
            return false;
        }
        i += 1;
    }
    true
}

/// A value is one non-empty token without whitespace (and without `=`, which
/// would make `a=b=c` ambiguous to a human reader).
pub fn is_valid_value(value: &str) -> bool {
    !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c == '=')
}

/// A key pattern: dotted segments, each either a literal key segment or `*`.
pub fn is_valid_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.split('.').all(|seg| seg == "*" || (is_valid_key(seg) && !seg.contains('.')))
}

/// Does `key` match `pattern`? `*` matches exactly one dotted segment, so
/// `cpu.*.mode` matches `cpu.3.mode` but not `cpu.3.x.mode` nor `cpu.mode`.
pub fn pattern_matches(pattern: &str, key: &str) -> bool {
    let mut p = pattern.split('.');
    let mut k = key.split('.');
    loop {
        match (p.next(), k.next()) {
            (None, None) => return true,
            (Some(ps), Some(ks)) => {
                if ks.is_empty() || (ps != "*" && ps != ks) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for k in ["a", "lapic.mode", "cpu.3.apic_id", "ipi.1.received", "x_y.0"] {
            assert!(is_valid_key(k), "{k}");
        }
        for k in ["", "A", "lapic.Mode", "a-b", "a b", ".a", "a.", "a..b", "a=b", "ä"] {
            assert!(!is_valid_key(k), "{k:?}");
        }
    }

    #[test]
    fn values() {
        assert!(is_valid_value("0xdead0000"));
        assert!(is_valid_value("x2apic"));
        assert!(!is_valid_value(""));
        assert!(!is_valid_value("a b"));
        assert!(!is_valid_value("a=b"));
    }

    #[test]
    fn patterns() {
        assert!(is_valid_pattern("cpu.*.mode"));
        assert!(is_valid_pattern("*"));
        assert!(!is_valid_pattern("cpu.**.mode"));
        assert!(!is_valid_pattern("cpu..mode"));
        assert!(pattern_matches("cpu.*.mode", "cpu.0.mode"));
        assert!(pattern_matches("cpu.*.mode", "cpu.15.mode"));
        assert!(!pattern_matches("cpu.*.mode", "cpu.mode"));
        assert!(!pattern_matches("cpu.*.mode", "cpu.1.2.mode"));
        assert!(!pattern_matches("cpu.*.mode", "cpu.1.modes"));
        assert!(pattern_matches("a.b", "a.b"));
        assert!(!pattern_matches("a.b", "a.b.c"));
    }
}
