//! The kernel command line (`keel-boot` cmdline): every accepted line is checked against
//! its documented syntax (positions point at the token, keys unique, values unquoted), and
//! printing the parameters back and parsing again gives the same parameters.
#![no_main]

use keel_boot::cmdline::{parse_u64, CmdlineError, CommandLine, MAX_TOKENS};
use libfuzzer_sys::fuzz_target;

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let cl = match CommandLine::parse(line) {
        Ok(cl) => cl,
        Err(e) => {
            let pos = match e {
                CmdlineError::UnterminatedQuote { pos }
                | CmdlineError::EmptyKey { pos }
                | CmdlineError::DuplicateKey { pos }
                | CmdlineError::TooManyTokens { pos, .. }
                | CmdlineError::UnexpectedQuote { pos }
                | CmdlineError::TrailingAfterQuote { pos }
                | CmdlineError::InvalidNumber { pos }
                | CmdlineError::MissingValue { pos } => pos,
            };
            assert!(pos <= line.len(), "{e:?} points past the line");
            return;
        }
    };
    assert!(cl.len() <= MAX_TOKENS && cl.is_empty() == cl.params().is_empty());
    let mut printed = String::new();
    for (i, p) in cl.params().iter().enumerate() {
        assert!(!p.key.is_empty() && !p.key.contains(['=', '"']) && !p.key.contains(is_ws));
        assert!(line[p.pos..].starts_with(p.key), "pos of {p:?}");
        assert!(cl.params()[..i].iter().all(|q| q.key != p.key), "duplicate {}", p.key);
        assert_eq!(cl.get(p.key), p.value);
        assert!(cl.contains(p.key));
        match p.value {
            None => {
                assert!(cl.flag(p.key) && p.value_pos == p.pos);
                assert_eq!(cl.get_u64(p.key), Err(CmdlineError::MissingValue { pos: p.pos }));
                printed.push_str(p.key);
            }
            Some(v) => {
                assert!(!v.contains('"'));
                assert!(line[p.value_pos..].starts_with(v));
                match cl.get_u64(p.key) {
                    Ok(n) => assert_eq!(n, parse_u64(v)),
                    Err(e) => assert_eq!(e, CmdlineError::InvalidNumber { pos: p.value_pos }),
                }
                printed.push_str(&format!("{}=\"{}\"", p.key, v));
            }
        }
        printed.push(' ');
    }
    let again = CommandLine::parse(&printed).expect("printed command line refused");
    let pairs = |c: &CommandLine<'_>| -> Vec<(String, Option<String>)> {
        c.params().iter().map(|p| (p.key.to_owned(), p.value.map(str::to_owned))).collect()
    };
    assert_eq!(pairs(&again), pairs(&cl));
});
